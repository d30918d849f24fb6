package repair

import (
	"context"
	"sync"
	"time"

	"go.uber.org/zap"
	"knative.dev/pkg/logging"
)

// FollowUps re-runs the repair of targets whose task result waits for the Argo controller to see
// their pod go, after the event that found them was answered: waiting inside the request would
// hold up every event behind it (the ApiServerSource adapter delivers one at a time), and the
// controller may take a whole requeue (10 s) to look. It is soft state: what it would do is on
// the cluster, and a follow-up lost with the process is the sweep's.
type FollowUps struct {
	// For bounds how long a target is followed; Max how many are followed at once (beyond, the
	// sweep takes them).
	For time.Duration
	Max int
	// First is the first pause; each next one doubles, up to 5 s.
	First time.Duration

	mu      sync.Mutex
	pending map[string]bool
	wg      sync.WaitGroup
	stop    chan struct{}
	once    sync.Once
}

type followUpKey struct{}

// inFollowUp reports whether ctx is a follow-up's own run (which must not schedule another).
func inFollowUp(ctx context.Context) bool { return ctx.Value(followUpKey{}) != nil }

// schedule starts following t unless it is followed already, the bound is reached or following
// is off; run is one repair, reporting whether it still waits.
func (f *FollowUps) schedule(ctx context.Context, t Target, run func(context.Context) bool) bool {
	if f == nil || f.For <= 0 {
		return false
	}
	// Keyed by the Workflow incarnation: a same-name successor's node is another target.
	key := t.Namespace + "/" + string(t.WorkflowUID) + "/" + t.NodeID
	f.mu.Lock()
	if f.pending == nil {
		f.pending = map[string]bool{}
	}
	if f.stop == nil {
		f.stop = make(chan struct{})
	}
	if f.pending[key] || len(f.pending) >= max(f.Max, 1) {
		f.mu.Unlock()
		return f.pending[key]
	}
	f.pending[key] = true
	stop := f.stop
	f.wg.Add(1)
	f.mu.Unlock()
	log := logging.FromContext(ctx)
	go func() {
		defer f.wg.Done()
		defer func() { f.mu.Lock(); delete(f.pending, key); f.mu.Unlock() }()
		ctx := logging.WithLogger(context.WithValue(context.Background(), followUpKey{}, true), log)
		pause, until := max(f.First, 10*time.Millisecond), time.Now().Add(f.For)
		for time.Now().Before(until) {
			select {
			case <-stop:
				log.Infow("follow-up stopped with the function: left to the sweep")
				return
			case <-time.After(pause):
			}
			if !run(ctx) {
				return
			}
			pause = min(2*pause, 5*time.Second)
		}
		log.Infow("follow-up ended: the controller did not mark the node within ADH_CONTROLLER_WAIT; left to the controller and the sweep",
			zap.Duration("followedFor", f.For))
	}()
	return true
}

// Stop ends every follow-up and waits for the runs in progress, at most until ctx is done.
func (f *FollowUps) Stop(ctx context.Context) {
	if f == nil {
		return
	}
	f.mu.Lock()
	if f.stop == nil {
		f.stop = make(chan struct{})
	}
	f.once.Do(func() { close(f.stop) })
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Following reports how many targets are followed now.
func (f *FollowUps) Following() int {
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.pending)
}
