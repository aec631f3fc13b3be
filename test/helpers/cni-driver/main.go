// A small libcni driver (cnitool's sources are not packaged in Debian): loads a conflist and runs
// one of add, check, del against a network namespace, as a runtime would. Built by the tests with
// GO111MODULE=off GOPATH=/usr/share/gocode go build (golang-github-appc-cni-dev has libcni).
//
//	cni-driver add|check|del CONFLIST NETNS CONTAINERID [IFNAME] [CAPABILITY-ARGS-JSON] [CNI_ARGS]
//
// add prints the result; errors go to stderr with exit 1. CNI_PATH names the plugin directories.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

func main() {
	if len(os.Args) < 5 {
		fmt.Fprintln(os.Stderr, "usage: cni-driver add|check|del CONFLIST NETNS CONTAINERID [IFNAME] [CAPABILITY-ARGS-JSON] [CNI_ARGS]")
		os.Exit(2)
	}
	conf, err := libcni.ConfListFromFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "loading the conflist:", err)
		os.Exit(1)
	}
	ifname := "eth0"
	if len(os.Args) > 5 && os.Args[5] != "" {
		ifname = os.Args[5]
	}
	rt := &libcni.RuntimeConf{ContainerID: os.Args[4], NetNS: os.Args[3], IfName: ifname}
	if len(os.Args) > 6 && os.Args[6] != "" {
		if err := json.Unmarshal([]byte(os.Args[6]), &rt.CapabilityArgs); err != nil {
			fmt.Fprintln(os.Stderr, "capability args:", err)
			os.Exit(2)
		}
	}
	if len(os.Args) > 7 && os.Args[7] != "" {
		for _, kv := range strings.Split(os.Args[7], ";") {
			if p := strings.SplitN(kv, "=", 2); len(p) == 2 {
				rt.Args = append(rt.Args, [2]string{p[0], p[1]})
			}
		}
	}
	cacheDir := os.Getenv("CNI_CACHE_DIR")
	if cacheDir == "" {
		cacheDir = "/var/lib/cni"
	}
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(os.Getenv("CNI_PATH")), cacheDir, nil)
	ctx := context.Background()
	switch os.Args[1] {
	case "add":
		res, err := cni.AddNetworkList(ctx, conf, rt)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := res.Print(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	case "check":
		err = cni.CheckNetworkList(ctx, conf, rt)
	case "del":
		err = cni.DelNetworkList(ctx, conf, rt)
	default:
		fmt.Fprintln(os.Stderr, "unknown command", os.Args[1])
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
