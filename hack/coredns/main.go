// Command coredns is CoreDNS v1.14 with only the plugins a single test node needs: cluster names from the
// kubernetes plugin and nothing that forwards a query off the machine (no forward, no external backends),
// so building it does not pull the cloud SDKs of the stock plugin set.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/ready"
)

// Directives are in the order of CoreDNS's plugin.cfg; a Corefile may use only these.
var directives = []string{"ready", "health", "errors", "loadbalance", "cache", "kubernetes"}

func init() {
	dnsserver.Directives = directives
}

func main() {
	coremain.Run()
}
