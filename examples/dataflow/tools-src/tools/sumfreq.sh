#!/bin/sh
# sumfreq.sh [FILE...]: add up the "COUNT WORD" lines of the files, or
# of standard input, as wordfreq.sh writes them. Prints one line per
# word, sorted by word.
cat "$@" | awk '{ n[$2] += $1 } END { for (w in n) print n[w], w }' | sort -k2,2
