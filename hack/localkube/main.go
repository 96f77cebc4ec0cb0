// Command localkube is one multi-call binary holding the real Kubernetes
// control-plane components kumi's tests run against. Which component it runs
// is chosen by the name it was started under (argv[0]), so one build serves
// every symlink scripts/localkube.sh creates:
//
//	kube-apiserver, etcd, kube-scheduler, kube-controller-manager
//
// It is a separate Go module so that kumi's own go.mod never carries
// k8s.io/kubernetes and its staging replaces. Tests start it through
// internal/kubetest (controller-runtime envtest finds the symlinks through
// KUBEBUILDER_ASSETS).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	_ "time/tzdata" // kube-controller-manager's CronJob time zones

	etcdmain "go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args
	// "localkube <component> args..." works too, for running it by hand.
	if name == "localkube" && len(args) > 1 {
		name, args = args[1], args[1:]
		os.Args = args
	}
	switch name {
	case "kube-apiserver":
		os.Exit(cli.Run(apiserver.NewAPIServerCommand()))
	case "kube-controller-manager":
		os.Exit(cli.Run(controllermanager.NewControllerManagerCommand()))
	case "kube-scheduler":
		os.Exit(cli.Run(scheduler.NewSchedulerCommand()))
	case "etcd":
		etcdmain.Main(args)
	default:
		fmt.Fprintf(os.Stderr, "localkube: run me as kube-apiserver, etcd, kube-scheduler or kube-controller-manager (by symlink name or as the first argument); got %q\n", name)
		os.Exit(2)
	}
}
