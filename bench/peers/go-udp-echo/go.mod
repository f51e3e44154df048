module reuseecho/bench/peers/go-udp-echo

go 1.19
