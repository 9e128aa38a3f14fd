//go:build kubernetes

package factory

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// kubeLabel marks the pods of a factory; its value is the factory's name.
const kubeLabel = "trellis.factory"

// Kube is a batch system whose jobs are Kubernetes pods, one worker each,
// never restarted: created, listed and deleted through client-go. A pod
// that cannot start (its image cannot be pulled, its secret is missing)
// stays Pending with a reason: Alive logs it, and the factory's
// --start-timeout replaces the pod.
type Kube struct {
	Client     kubernetes.Interface
	Namespace  string
	Factory    string        // the factory's name: the value of the pods' label trellis.factory
	Image      string        // a container image holding the trellis binary
	Binary     string        // the binary's path in the image; default "trellis" on its PATH
	TimeLimit  time.Duration // activeDeadlineSeconds; 0 none
	SecretName string        // a Kubernetes Secret mounted read-only at SecretDir: the worker's --secret-file is in it
	SecretDir  string
	Grace      time.Duration // a deleted pod's termination grace period: the worker drains in it
	Log        *slog.Logger  // pods that wait with a reason; nil discards
}

// pod returns the pod of job, its command's first element replaced by the
// binary in the image; its requests and limits (cpu, memory,
// ephemeral-storage, nvidia.com/gpu) are the worker's resources.
func (k *Kube) pod(job Job) *corev1.Pod {
	name, command, w := job.Name, job.Command, job.Resources
	bin := k.Binary
	if bin == "" {
		bin = "trellis"
	}
	res := corev1.ResourceList{corev1.ResourceCPU: *resource.NewMilliQuantity(int64(w.Cores*1000+0.5), resource.DecimalSI)}
	if w.MemoryMB > 0 {
		res[corev1.ResourceMemory] = *resource.NewQuantity(w.MemoryMB<<20, resource.BinarySI)
	}
	if w.DiskMB > 0 {
		res[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(w.DiskMB<<20, resource.BinarySI)
	}
	if w.GPUs > 0 {
		res["nvidia.com/gpu"] = *resource.NewQuantity(int64(w.GPUs), resource.DecimalSI)
	}
	c := corev1.Container{
		Name:      "worker",
		Image:     k.Image,
		Command:   append([]string{bin}, command[1:]...),
		Resources: corev1.ResourceRequirements{Requests: res, Limits: res},
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: k.Namespace, Labels: map[string]string{kubeLabel: k.Factory}},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{c},
		},
	}
	if k.TimeLimit > 0 {
		s := int64(k.TimeLimit / time.Second)
		p.Spec.ActiveDeadlineSeconds = &s
	}
	if k.Grace > 0 {
		s := int64(k.Grace / time.Second)
		p.Spec.TerminationGracePeriodSeconds = &s
	}
	if k.SecretName != "" {
		p.Spec.Volumes = []corev1.Volume{{Name: "secret", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: k.SecretName}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "secret", MountPath: filepath.Clean(k.SecretDir), ReadOnly: true}}
	}
	return p
}

// Submit creates the pod.
func (k *Kube) Submit(ctx context.Context, job Job) error {
	name, command := job.Name, job.Command
	if len(command) == 0 {
		return fmt.Errorf("job %s: no command", name)
	}
	if _, err := k.Client.CoreV1().Pods(k.Namespace).Create(ctx, k.pod(job), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create pod %s in namespace %s: %w", name, k.Namespace, err)
	}
	return nil
}

// Cancel deletes the pod; the worker gets SIGTERM and Grace to drain. A
// pod already gone is no error.
func (k *Kube) Cancel(ctx context.Context, name string) error {
	err := k.Client.CoreV1().Pods(k.Namespace).Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s in namespace %s: %w", name, k.Namespace, err)
	}
	return nil
}

// Alive lists the factory's pods: Pending and Running ones are alive;
// Succeeded and Failed ones are deleted, so none is left behind.
func (k *Kube) Alive(ctx context.Context) (map[string]bool, error) {
	pods, err := k.Client.CoreV1().Pods(k.Namespace).List(ctx, metav1.ListOptions{LabelSelector: kubeLabel + "=" + k.Factory})
	if err != nil {
		return nil, fmt.Errorf("list pods %s=%s in namespace %s: %w", kubeLabel, k.Factory, k.Namespace, err)
	}
	alive := make(map[string]bool)
	for _, p := range pods.Items {
		switch p.Status.Phase {
		case corev1.PodSucceeded, corev1.PodFailed:
			if p.DeletionTimestamp == nil {
				k.log().Info("a worker pod ended", "pod", p.Name, "phase", p.Status.Phase, "reason", p.Status.Reason, "message", p.Status.Message)
				k.Cancel(ctx, p.Name)
			}
		case corev1.PodPending:
			alive[p.Name] = true
			for _, cs := range p.Status.ContainerStatuses {
				if w := cs.State.Waiting; w != nil && w.Reason != "" && w.Reason != "ContainerCreating" {
					k.log().Warn("a worker pod cannot start", "pod", p.Name, "reason", w.Reason, "message", w.Message)
				}
			}
		default: // Running, Unknown
			alive[p.Name] = true
		}
	}
	return alive, nil
}

func (k *Kube) log() *slog.Logger {
	if k.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return k.Log
}
