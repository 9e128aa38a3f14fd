//go:build kubernetes

package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"trellis/internal/factory"
)

// kubeFlags are trellis factory's flags for --batch kubernetes.
type kubeFlags struct {
	namespace, image, binary, secret, kubeconfig string
}

func (k *kubeFlags) flags(f *pflag.FlagSet) {
	f.StringVar(&k.namespace, "namespace", "default", "kubernetes: the namespace of the worker pods")
	f.StringVar(&k.image, "image", "", "kubernetes: a container image holding the trellis binary (required)")
	f.StringVar(&k.binary, "image-binary", "trellis", "kubernetes: the trellis binary's path in --image")
	f.StringVar(&k.secret, "kube-secret", "", "kubernetes: a Secret holding the shared secret, mounted at the directory of --secret-file in each pod (required)")
	f.StringVar(&k.kubeconfig, "kubeconfig", "", "kubernetes: the kubeconfig file (default: $KUBECONFIG, ~/.kube/config, or the pod's service account)")
}

// batch returns the Kubernetes batch system of a factory named name.
func (k *kubeFlags) batch(timeLimit, drain time.Duration, name, secretFile string, log *slog.Logger) (factory.Batch, error) {
	if k.image == "" || k.secret == "" {
		return nil, fmt.Errorf("--batch kubernetes: give --image (a container image with the trellis binary) and --kube-secret (a Secret holding the file of --secret-file)")
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("--batch kubernetes: no cluster to talk to (give --kubeconfig, or run in a pod): %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("--batch kubernetes: %w", err)
	}
	abs, err := filepath.Abs(secretFile)
	if err != nil {
		return nil, err
	}
	return &factory.Kube{Client: client, Namespace: k.namespace, Factory: name, Image: k.image, Binary: k.binary,
		TimeLimit: timeLimit, SecretName: k.secret, SecretDir: filepath.Dir(abs), Grace: drain + 10*time.Second, Log: log}, nil
}
