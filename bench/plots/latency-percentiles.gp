set terminal pngcairo size 1200,750 font 'sans,9'
set output "latency-percentiles.png"
set datafile separator '\t'
set grid ytics lc rgb '#dddddd'
set border 3
set tics nomirror
set key top left font ',8' noenhanced
set termoption noenhanced
set multiplot layout 2,3 title "latency percentiles (medians of repeats)\nrun: compare 2026-11-27T13:54:38+00:00, load max 1.85 on 2 CPUs" font ',11'
set title "pp64-d1"
set xlabel 'percentile'
set ylabel 'latency (us)'
set logscale y
set yrange [*:*]
set xrange [0.2:3.1]
set xtics ("p50" 0.3010, "p90" 1.0000, "p99" 2.0000, "p99.9" 3.0000)
set key top left
plot "latency-percentiles-pp64-d1.dat" index 0 using 1:2 with linespoints pt 7 lw 2 lc rgb "#1f4e9c" title "reuseecho", \
     "latency-percentiles-pp64-d1.dat" index 1 using 1:2 with linespoints pt 7 lw 2 lc rgb "#00a6a6" title "go", \
     "latency-percentiles-pp64-d1.dat" index 2 using 1:2 with linespoints pt 7 lw 2 lc rgb "#3c9a3c" title "node", \
     "latency-percentiles-pp64-d1.dat" index 3 using 1:2 with linespoints pt 7 lw 2 lc rgb "#e08a00" title "python"
unset logscale y
set title "pp64-d8"
set xlabel 'percentile'
set ylabel 'latency (us)'
set logscale y
set yrange [*:*]
set xrange [0.2:3.1]
set xtics ("p50" 0.3010, "p90" 1.0000, "p99" 2.0000, "p99.9" 3.0000)
set key top left
plot "latency-percentiles-pp64-d8.dat" index 0 using 1:2 with linespoints pt 7 lw 2 lc rgb "#1f4e9c" title "reuseecho", \
     "latency-percentiles-pp64-d8.dat" index 1 using 1:2 with linespoints pt 7 lw 2 lc rgb "#00a6a6" title "go", \
     "latency-percentiles-pp64-d8.dat" index 2 using 1:2 with linespoints pt 7 lw 2 lc rgb "#3c9a3c" title "node", \
     "latency-percentiles-pp64-d8.dat" index 3 using 1:2 with linespoints pt 7 lw 2 lc rgb "#e08a00" title "python"
unset logscale y
set title "stream16k"
set xlabel 'percentile'
set ylabel 'latency (us)'
set logscale y
set yrange [*:*]
set xrange [0.2:3.1]
set xtics ("p50" 0.3010, "p90" 1.0000, "p99" 2.0000, "p99.9" 3.0000)
set key top left
plot "latency-percentiles-stream16k.dat" index 0 using 1:2 with linespoints pt 7 lw 2 lc rgb "#1f4e9c" title "reuseecho", \
     "latency-percentiles-stream16k.dat" index 1 using 1:2 with linespoints pt 7 lw 2 lc rgb "#00a6a6" title "go", \
     "latency-percentiles-stream16k.dat" index 2 using 1:2 with linespoints pt 7 lw 2 lc rgb "#3c9a3c" title "node", \
     "latency-percentiles-stream16k.dat" index 3 using 1:2 with linespoints pt 7 lw 2 lc rgb "#e08a00" title "python"
unset logscale y
set title "churn64"
set xlabel 'percentile'
set ylabel 'latency (us)'
set logscale y
set yrange [*:*]
set xrange [0.2:3.1]
set xtics ("p50" 0.3010, "p90" 1.0000, "p99" 2.0000, "p99.9" 3.0000)
set key top left
plot "latency-percentiles-churn64.dat" index 0 using 1:2 with linespoints pt 7 lw 2 lc rgb "#1f4e9c" title "reuseecho", \
     "latency-percentiles-churn64.dat" index 1 using 1:2 with linespoints pt 7 lw 2 lc rgb "#00a6a6" title "go", \
     "latency-percentiles-churn64.dat" index 2 using 1:2 with linespoints pt 7 lw 2 lc rgb "#3c9a3c" title "node", \
     "latency-percentiles-churn64.dat" index 3 using 1:2 with linespoints pt 7 lw 2 lc rgb "#e08a00" title "python"
unset logscale y
set title "rate64 (offered 52.9k msgs/s)"
set xlabel 'percentile'
set ylabel 'latency (us)'
set logscale y
set yrange [*:*]
set xrange [0.2:3.1]
set xtics ("p50" 0.3010, "p90" 1.0000, "p99" 2.0000, "p99.9" 3.0000)
set key top left
plot "latency-percentiles-rate64.dat" index 0 using 1:2 with linespoints pt 7 lw 2 lc rgb "#1f4e9c" title "reuseecho", \
     "latency-percentiles-rate64.dat" index 1 using 1:2 with linespoints pt 7 lw 2 lc rgb "#00a6a6" title "go", \
     "latency-percentiles-rate64.dat" index 2 using 1:2 with linespoints pt 7 lw 2 lc rgb "#3c9a3c" title "node", \
     "latency-percentiles-rate64.dat" index 3 using 1:2 with linespoints pt 7 lw 2 lc rgb "#e08a00" title "python"
unset logscale y
unset multiplot
