// Package data embeds the digits data set (see README.md in this directory
// for its source and licence), so that programs built from this module find
// it wherever they run.
package data

import _ "embed"

// DigitsCSVGz is digits.csv.gz: 1,797 rows of 64 pixels (0..16) and a label,
// gzipped CSV without a header.
//
//go:embed digits.csv.gz
var DigitsCSVGz []byte
