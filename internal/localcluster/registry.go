package localcluster

import (
	"context"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// StartRegistry serves an in-memory OCI registry (go-containerregistry's, the one its own tests
// use) over plain HTTP on a free loopback port, so `func deploy` can push an image without a
// container runtime or a registry service. addr is "127.0.0.1:PORT": clients that follow
// go-containerregistry's rules (func's pusher among them) speak HTTP to a loopback registry.
// stop closes the server and drops every image it holds.
func StartRegistry() (addr string, stop func(), err error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{
		Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0))),
		// A push of a function image is a few large blobs: no write timeout, but a slow client
		// must not hold a connection open forever before sending its headers.
		ReadHeaderTimeout: 30 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Printf("registry: %v", err)
		}
	}()
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}
	return l.Addr().String(), stop, nil
}
