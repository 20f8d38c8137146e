//go:build tools

// Package tools pins the main packages that build.sh compiles, so that
// `go mod tidy` keeps them in this module's graph.
package tools

import (
	_ "helm.sh/helm/v3/cmd/helm"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
