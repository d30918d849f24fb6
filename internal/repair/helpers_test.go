package repair

import (
	"time"

	"function/config"
	"function/internal/apifake"
)

// repairerOver is the Repairer the function builds, over the fake cluster, at the clock now.
func repairerOver(c *apifake.Cluster, now time.Time) *Repairer {
	return New(c.Kube, c.Argo, Options{
		Policy: Policy{Scope: config.Scope{Excluded: []string{"kube-system"}}, NodeErrorGrace: time.Minute},
		Host:   "test-host",
		Now:    func() time.Time { return now },
	})
}

func target(opts ...apifake.PodOption) Target {
	t, err := TargetFromPod(apifake.Pod(opts...), apifake.T0.Add(6*time.Minute), "pod delete event")
	if err != nil {
		panic(err)
	}
	return t
}
