// Command etcd is etcd's own server entry point, built from the etcd server
// module that Kubernetes itself depends on (so its version follows the
// Kubernetes module graph).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
