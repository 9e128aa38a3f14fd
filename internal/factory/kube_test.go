//go:build kubernetes

package factory

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"trellis"
)

// TestKube: with client-go's fake clientset, the factory creates pods
// asking for the worker's resources, reports a pod that cannot start,
// deletes ended pods, backs off from a refused create, and deletes its
// pods when it stops.
func TestKube(t *testing.T) {
	client := fake.NewClientset()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	b := &Kube{Client: client, Namespace: "ns", Factory: "w", Image: "registry.example/trellis:1", Binary: "/usr/local/bin/trellis",
		TimeLimit: time.Hour, SecretName: "trellis-secret", SecretDir: "/etc/trellis", Grace: 40 * time.Second, Log: log}
	st := fixedStatus{&trellis.Status{Demand: []trellis.ShapeDemand{{Shape: trellis.Resources{Cores: 1}, Waiting: 2}}}}
	f := newFactory(Config{Limits: Limits{Worker: trellis.Resources{Cores: 1.5, MemoryMB: 2048, GPUs: 1}, Max: 5}, Name: "w", Worker: []string{"/home/me/trellis", "worker", "m:9123", "--secret-file", "/etc/trellis/secret"}, Interval: time.Second}, log, b)
	now := time.Unix(1000, 0)
	f.now = func() time.Time { return now }
	ctx := context.Background()
	pods := client.CoreV1().Pods("ns")

	if err := f.cycle(ctx, st); err != nil {
		t.Fatal(err)
	}
	p, err := pods.Get(ctx, "w-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := p.Spec.Containers[0]
	if want := []string{"/usr/local/bin/trellis", "worker", "m:9123", "--secret-file", "/etc/trellis/secret", "--name", "w-1", "--cores", "1.5", "--gpus", "1", "--memory", "2048"}; !cmp.Equal(want, c.Command) {
		t.Errorf("command (-want +got):\n%s", cmp.Diff(want, c.Command))
	}
	got := map[string]string{}
	for k, v := range c.Resources.Limits {
		got[string(k)] = v.String()
	}
	if want := map[string]string{"cpu": "1500m", "memory": "2Gi", "nvidia.com/gpu": "1"}; !cmp.Equal(want, got) {
		t.Errorf("limits (-want +got):\n%s", cmp.Diff(want, got))
	}
	if p.Labels[kubeLabel] != "w" || p.Spec.RestartPolicy != corev1.RestartPolicyNever || *p.Spec.ActiveDeadlineSeconds != 3600 ||
		*p.Spec.TerminationGracePeriodSeconds != 40 || c.VolumeMounts[0].MountPath != "/etc/trellis" || p.Spec.Volumes[0].Secret.SecretName != "trellis-secret" {
		t.Errorf("pod %s: labels %v, restart %s, deadline %v, grace %v, mounts %v", p.Name, p.Labels, p.Spec.RestartPolicy, p.Spec.ActiveDeadlineSeconds, p.Spec.TerminationGracePeriodSeconds, c.VolumeMounts)
	}

	// w-1 cannot pull its image; w-2 failed: the next cycle reports w-1,
	// deletes w-2 and counts it a failed start. The API server refuses the
	// replacement: a warning, no error of the cycle.
	p.Status.Phase = corev1.PodPending
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "worker", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "Back-off pulling image"}}}}
	if _, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	p2, _ := pods.Get(ctx, "w-2", metav1.GetOptions{})
	p2.Status.Phase = corev1.PodFailed
	if _, err := pods.UpdateStatus(ctx, p2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	client.PrependReactor("create", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, errForbidden
	})
	now = now.Add(time.Second)
	if err := f.cycle(ctx, st); err != nil {
		t.Fatalf("a refused create stopped the cycle: %v", err)
	}
	for _, want := range []string{"ImagePullBackOff", "exceeded quota"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, logs.String())
		}
	}
	if _, err := pods.Get(ctx, "w-2", metav1.GetOptions{}); err == nil {
		t.Error("the failed pod w-2 is not deleted")
	}
	if f.failed != 1 {
		t.Errorf("%d failed starts; want w-2", f.failed)
	}

	f.stop()
	if left, _ := pods.List(ctx, metav1.ListOptions{}); len(left.Items) != 0 {
		t.Errorf("%d pods left after stop", len(left.Items))
	}
	if err := b.Cancel(ctx, "w-1"); err != nil {
		t.Errorf("Cancel of a pod gone: %v", err)
	}
}

var errForbidden = &forbidden{}

type forbidden struct{}

func (*forbidden) Error() string {
	return `pods "w-3" is forbidden: exceeded quota: compute, requested: cpu=1500m, used: cpu=3, limited: cpu=4`
}
