package repair

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"function/eventing"
	"function/internal/apifake"
)

// Which listed pods may skip the reads of the full path: only a running pod of a machine claimed
// terminated, whose Node was read gone less than HostReadValidity ago, the incarnation the LIST
// returned, held by nothing but Argo's status finalizer.
func TestOrphanEligible(t *testing.T) {
	now := apifake.T0.Add(10 * time.Minute)
	for _, tc := range []struct {
		name    string
		opts    []apifake.PodOption
		machine eventing.Machine
		readAgo time.Duration // 0: the Node was not read
		want    bool
	}{
		{"running pod, machine terminated, Node read gone just now", nil, eventing.MachineTerminated, 100 * time.Millisecond, true},
		{"held by Argo's status finalizer alone", []apifake.PodOption{apifake.WithStatusFinalizer}, eventing.MachineTerminated, 100 * time.Millisecond, true},
		{"the Node read is older than its validity", nil, eventing.MachineTerminated, 2 * HostReadValidity, false},
		{"the Node was not read", nil, eventing.MachineTerminated, 0, false},
		{"a plain Node delete claims nothing of the machine", nil, eventing.MachineUnknown, 100 * time.Millisecond, false},
		{"PodGC's Failed over running containers: the Workflow decides", []apifake.PodOption{apifake.MarkedFailedByPodGC}, eventing.MachineTerminated, 100 * time.Millisecond, false},
		{"a finished pod: its status is the outcome", []apifake.PodOption{apifake.Failed}, eventing.MachineTerminated, 100 * time.Millisecond, false},
		{"evicted before its main container started: failedPodRestart may restart it", []apifake.PodOption{apifake.EvictedBeforeStart}, eventing.MachineTerminated, 100 * time.Millisecond, false},
		{"another finalizer holds it", []apifake.PodOption{apifake.WithFinalizer}, eventing.MachineTerminated, 100 * time.Millisecond, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := apifake.Pod(tc.opts...)
			tg := target(tc.opts...)
			tg.Machine = tc.machine
			l := Listed{Pod: p}
			if tc.readAgo > 0 {
				l.HostGoneAt = now.Add(-tc.readAgo)
			}
			if got := orphanEligible(tg, l, now); got != tc.want {
				t.Errorf("orphanEligible = %v, want %v", got, tc.want)
			}
		})
	}
	t.Run("another incarnation than the target's", func(t *testing.T) {
		tg := target()
		tg.Machine = eventing.MachineTerminated
		if orphanEligible(tg, Listed{Pod: apifake.Pod(apifake.Reincarnated), HostGoneAt: now}, now) {
			t.Error("eligible for a pod of another UID")
		}
	})
}

// ListedSkip leaves a pod on a gone Node alone, without a call, only where the full decision does
// not depend on the Workflow or the task result.
func TestListedSkip(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    []apifake.PodOption
		machine eventing.Machine
		skip    bool
	}{
		{"running, plain Node delete: waits for PodGC", nil, eventing.MachineUnknown, true},
		{"running, machine terminated: repaired", nil, eventing.MachineTerminated, false},
		{"status finalizer: released whatever the machine", []apifake.PodOption{apifake.WithStatusFinalizer}, eventing.MachineUnknown, false},
		{"force-deleted, no finalizer: the API server removes it", []apifake.PodOption{apifake.ForceDeleted}, eventing.MachineTerminated, true},
		{"deleted gracefully, its kubelet gone: repaired", []apifake.PodOption{apifake.Terminating}, eventing.MachineTerminated, false},
		{"finished with every container ended: its task result is decided", []apifake.PodOption{apifake.Failed}, eventing.MachineUnknown, false},
		{"another finalizer on a terminated machine: waits", []apifake.PodOption{func(p *corev1.Pod) { p.Finalizers = []string{"example.com/keep"} }}, eventing.MachineTerminated, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := target(tc.opts...)
			tg.Machine = tc.machine
			if got := ListedSkip(tg, apifake.Pod(tc.opts...)) != ""; got != tc.skip {
				t.Errorf("skipped = %v, want %v", got, tc.skip)
			}
		})
	}
}
