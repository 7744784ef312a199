# The peer benchmark's chart (bench/peers/run.sh draws it after the table): grouped bars of the
# throughput cells' medians, one panel per MTU, one bar per peer, Gbit/s on a log scale (the peers
# span two orders of magnitude: slirp4netns at MTU 1500 to the kernel's veth).
#
#   gnuplot -e "files='A.dat:1500 B.dat:65520'; out='peers.png'; heading='...'" bench/peers/plot.gp
#
# Each data file: a header line "cell PEER...", then one line per cell: a quoted label and one
# value per peer, "-" where the peer has none (no bar, no label).

if (!exists("files") || !exists("out")) { print "plot.gp: give files='F:MTU ...' and out='X.png'"; exit status 2 }
if (!exists("heading")) heading = "ankanet peer benchmark"

panels = words(files)
set terminal pngcairo size (panels * 800), 640 font "DejaVu Sans,10" noenhanced
set output out
set datafile missing "-"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set logscale y 10
set yrange [0.05:300]   # headroom above the kernel's ~30 Gbit/s for the key
set ytics format "%g"
set grid ytics lc rgb "#d0d0d0"
set ylabel "Gbit/s (log scale)"
set xtics nomirror
# The header line titles the bars; every plot skips it, so $0 counts the cells from 0.
set key autotitle columnheader
set key inside top left horizontal font ",9" samplen 2

peers = 5
gap = 1
# A bar's centre in a clustered histogram: cluster i (0-based) spans i - 0.5 .. i + 0.5 with
# (peers + gap) slots, the gap split around it; column c (2 = the first peer) sits in slot c - 2.
bar_x(i, c) = i - 0.5 + (gap / 2.0 + (c - 2) + 0.5) / (peers + gap)
colours = "#1f5fbf #7fa7e6 #d9822b #8c6d1f #4d9a4d"
value_label(v) = (v >= 10 ? sprintf("%.0f", v) : sprintf("%.2g", v))

set multiplot layout 1, panels title heading font ",11"
do for [p = 1:panels] {
    spec = word(files, p)
    colon = strstrt(spec, ":")
    file = spec[1:colon - 1]
    mtu = spec[colon + 1:]
    set title sprintf("MTU %s", mtu)
    plot for [c = 2:peers + 1] file using c:xtic(1) lc rgb word(colours, c - 1), \
         for [c = 2:peers + 1] file using (bar_x($0, c)):(column(c)):(value_label(column(c))) \
             with labels rotate by 90 left offset 0, 0.3 font ",7" notitle
}
unset multiplot
