set terminal pngcairo size 1200,750 font 'sans,9'
set output "peers-p99_us.png"
set datafile separator '\t'
set grid ytics lc rgb '#dddddd'
set border 3
set tics nomirror
set key top left font ',8' noenhanced
set termoption noenhanced
set multiplot layout 2,2 title "p99 latency (us), by case\nLOADED RUN, NOT FIT TO PUBLISH - run: compare 2026-11-27T16:11:12+00:00, load max 2.10 on 2 CPUs" font ',11'
set title "udp-pp64-d1"
set ylabel "p99 latency (us)"
set yrange [0:*]
set xrange [-0.6:2.6]
set style fill solid 0.85 noborder
set boxwidth 0.7
set xtics rotate by -30 font ',8'
unset key
set format y '%g'
plot "peers-p99_us-udp-pp64-d1.dat" using 1:3:4:xtic(2) skip 1 with boxes lc rgb variable, '' using 1:3:5 skip 1 with labels offset 0,0.6 font ',8'
set title "udp-pp64-d8"
set ylabel "p99 latency (us)"
set yrange [0:*]
set xrange [-0.6:2.6]
set style fill solid 0.85 noborder
set boxwidth 0.7
set xtics rotate by -30 font ',8'
unset key
set format y '%g'
plot "peers-p99_us-udp-pp64-d8.dat" using 1:3:4:xtic(2) skip 1 with boxes lc rgb variable, '' using 1:3:5 skip 1 with labels offset 0,0.6 font ',8'
set title "udp-stream1472"
set ylabel "p99 latency (us)"
set yrange [0:*]
set xrange [-0.6:2.6]
set style fill solid 0.85 noborder
set boxwidth 0.7
set xtics rotate by -30 font ',8'
unset key
set format y '%g'
plot "peers-p99_us-udp-stream1472.dat" using 1:3:4:xtic(2) skip 1 with boxes lc rgb variable, '' using 1:3:5 skip 1 with labels offset 0,0.6 font ',8'
set title "udp-rate64"
set ylabel "p99 latency (us)"
set yrange [0:*]
set xrange [-0.6:2.6]
set style fill solid 0.85 noborder
set boxwidth 0.7
set xtics rotate by -30 font ',8'
unset key
set format y '%g'
plot "peers-p99_us-udp-rate64.dat" using 1:3:4:xtic(2) skip 1 with boxes lc rgb variable, '' using 1:3:5 skip 1 with labels offset 0,0.6 font ',8'
unset multiplot
