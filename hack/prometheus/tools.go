//go:build tools

// Package tools pins the main packages that build.sh compiles, so that they
// stay in this module's graph.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
