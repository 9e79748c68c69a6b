// Command etcd is the etcd server, built from the etcd release that
// k8s.io/kubernetes itself pins, so the API server and its store always match.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
