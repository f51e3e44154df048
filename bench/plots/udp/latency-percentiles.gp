set terminal pngcairo size 1200,750 font 'sans,9'
set output "latency-percentiles.png"
set datafile separator '\t'
set grid ytics lc rgb '#dddddd'
set border 3
set tics nomirror
set key top left font ',8' noenhanced
set termoption noenhanced
set multiplot layout 2,2 title "latency percentiles (medians of repeats)\nLOADED RUN, NOT FIT TO PUBLISH - run: compare 2026-11-27T16:11:12+00:00, load max 2.10 on 2 CPUs" font ',11'
set title "udp-pp64-d1"
set xlabel 'percentile'
set ylabel 'latency (us)'
set logscale y
set yrange [*:*]
set xrange [0.2:3.1]
set xtics ("p50" 0.3010, "p90" 1.0000, "p99" 2.0000, "p99.9" 3.0000)
set key top left
plot "latency-percentiles-udp-pp64-d1.dat" index 0 using 1:2 with linespoints pt 7 lw 2 lc rgb "#1f4e9c" title "reuseecho", \
     "latency-percentiles-udp-pp64-d1.dat" index 1 using 1:2 with linespoints pt 7 lw 2 lc rgb "#00a6a6" title "go", \
     "latency-percentiles-udp-pp64-d1.dat" index 2 using 1:2 with linespoints pt 7 lw 2 lc rgb "#e08a00" title "python"
unset logscale y
set title "udp-pp64-d8"
set xlabel 'percentile'
set ylabel 'latency (us)'
set logscale y
set yrange [*:*]
set xrange [0.2:3.1]
set xtics ("p50" 0.3010, "p90" 1.0000, "p99" 2.0000, "p99.9" 3.0000)
set key top left
plot "latency-percentiles-udp-pp64-d8.dat" index 0 using 1:2 with linespoints pt 7 lw 2 lc rgb "#1f4e9c" title "reuseecho", \
     "latency-percentiles-udp-pp64-d8.dat" index 1 using 1:2 with linespoints pt 7 lw 2 lc rgb "#00a6a6" title "go", \
     "latency-percentiles-udp-pp64-d8.dat" index 2 using 1:2 with linespoints pt 7 lw 2 lc rgb "#e08a00" title "python"
unset logscale y
set title "udp-stream1472"
set xlabel 'percentile'
set ylabel 'latency (us)'
set logscale y
set yrange [*:*]
set xrange [0.2:3.1]
set xtics ("p50" 0.3010, "p90" 1.0000, "p99" 2.0000, "p99.9" 3.0000)
set key top left
plot "latency-percentiles-udp-stream1472.dat" index 0 using 1:2 with linespoints pt 7 lw 2 lc rgb "#1f4e9c" title "reuseecho", \
     "latency-percentiles-udp-stream1472.dat" index 1 using 1:2 with linespoints pt 7 lw 2 lc rgb "#00a6a6" title "go", \
     "latency-percentiles-udp-stream1472.dat" index 2 using 1:2 with linespoints pt 7 lw 2 lc rgb "#e08a00" title "python"
unset logscale y
set title "udp-rate64 (offered 89.2k msgs/s)"
set xlabel 'percentile'
set ylabel 'latency (us)'
set logscale y
set yrange [*:*]
set xrange [0.2:3.1]
set xtics ("p50" 0.3010, "p90" 1.0000, "p99" 2.0000, "p99.9" 3.0000)
set key top left
plot "latency-percentiles-udp-rate64.dat" index 0 using 1:2 with linespoints pt 7 lw 2 lc rgb "#1f4e9c" title "reuseecho", \
     "latency-percentiles-udp-rate64.dat" index 1 using 1:2 with linespoints pt 7 lw 2 lc rgb "#00a6a6" title "go", \
     "latency-percentiles-udp-rate64.dat" index 2 using 1:2 with linespoints pt 7 lw 2 lc rgb "#e08a00" title "python"
unset logscale y
unset multiplot
