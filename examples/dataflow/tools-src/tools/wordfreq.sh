#!/bin/sh
# wordfreq.sh [FILE...]: count the words of the files, or of standard
# input, in lower case. Prints one "COUNT WORD" line per distinct word,
# sorted by word, so that the same text always gives the same bytes.
cat "$@" | tr -cs 'A-Za-z' '\n' | tr 'A-Z' 'a-z' | awk 'NF' |
	sort | uniq -c | awk '{ print $1, $2 }'
