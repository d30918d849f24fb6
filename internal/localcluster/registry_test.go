package localcluster

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"net/http"
	"testing"
)

// TestRegistry pushes a blob to the registry over plain HTTP, reads it back, and checks that the
// registry is gone after stop.
func TestRegistry(t *testing.T) {
	addr, stop, err := StartRegistry()
	if err != nil {
		t.Fatal(err)
	}
	blob := []byte("a layer")
	digest := fmt.Sprintf("sha256:%x", sha256.Sum256(blob))
	resp, err := http.Post("http://"+addr+"/v2/adh/f/blobs/uploads/?digest="+digest, "application/octet-stream", bytes.NewReader(blob))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %s", resp.Status)
	}
	resp, err = http.Get("http://" + addr + "/v2/adh/f/blobs/" + digest)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	_, _ = got.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(got.Bytes(), blob) {
		t.Fatalf("read back: %s %q", resp.Status, got.String())
	}
	stop()
	if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
		resp.Body.Close()
		t.Errorf("the registry still answers after stop: %s", resp.Status)
	}
}
