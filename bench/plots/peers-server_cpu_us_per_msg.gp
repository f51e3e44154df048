set terminal pngcairo size 1200,750 font 'sans,9'
set output "peers-server_cpu_us_per_msg.png"
set datafile separator '\t'
set grid ytics lc rgb '#dddddd'
set border 3
set tics nomirror
set key top left font ',8' noenhanced
set termoption noenhanced
set multiplot layout 2,3 title "server CPU us / message, by case\nrun: compare 2026-11-27T13:54:38+00:00, load max 1.85 on 2 CPUs" font ',11'
set title "pp64-d1"
set ylabel "server CPU us / message"
set yrange [0:*]
set xrange [-0.6:3.6]
set style fill solid 0.85 noborder
set boxwidth 0.7
set xtics rotate by -30 font ',8'
unset key
set format y '%g'
plot "peers-server_cpu_us_per_msg-pp64-d1.dat" using 1:3:4:xtic(2) skip 1 with boxes lc rgb variable, '' using 1:3:5 skip 1 with labels offset 0,0.6 font ',8'
set title "pp64-d8"
set ylabel "server CPU us / message"
set yrange [0:*]
set xrange [-0.6:3.6]
set style fill solid 0.85 noborder
set boxwidth 0.7
set xtics rotate by -30 font ',8'
unset key
set format y '%g'
plot "peers-server_cpu_us_per_msg-pp64-d8.dat" using 1:3:4:xtic(2) skip 1 with boxes lc rgb variable, '' using 1:3:5 skip 1 with labels offset 0,0.6 font ',8'
set title "stream16k"
set ylabel "server CPU us / message"
set yrange [0:*]
set xrange [-0.6:3.6]
set style fill solid 0.85 noborder
set boxwidth 0.7
set xtics rotate by -30 font ',8'
unset key
set format y '%g'
plot "peers-server_cpu_us_per_msg-stream16k.dat" using 1:3:4:xtic(2) skip 1 with boxes lc rgb variable, '' using 1:3:5 skip 1 with labels offset 0,0.6 font ',8'
set title "churn64"
set ylabel "server CPU us / message"
set yrange [0:*]
set xrange [-0.6:3.6]
set style fill solid 0.85 noborder
set boxwidth 0.7
set xtics rotate by -30 font ',8'
unset key
set format y '%g'
plot "peers-server_cpu_us_per_msg-churn64.dat" using 1:3:4:xtic(2) skip 1 with boxes lc rgb variable, '' using 1:3:5 skip 1 with labels offset 0,0.6 font ',8'
set title "rate64"
set ylabel "server CPU us / message"
set yrange [0:*]
set xrange [-0.6:3.6]
set style fill solid 0.85 noborder
set boxwidth 0.7
set xtics rotate by -30 font ',8'
unset key
set format y '%g'
plot "peers-server_cpu_us_per_msg-rate64.dat" using 1:3:4:xtic(2) skip 1 with boxes lc rgb variable, '' using 1:3:5 skip 1 with labels offset 0,0.6 font ',8'
unset multiplot
