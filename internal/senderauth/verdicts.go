package senderauth

import (
	"crypto/sha256"
	"encoding/hex"
	"time"
)

// tokenKey identifies a token in the caches by its SHA-256: the token itself is never kept.
type tokenKey [sha256.Size]byte

func keyOf(token string) tokenKey { return sha256.Sum256([]byte(token)) }

// String names the token in errors and logs without revealing it.
func (k tokenKey) String() string { return "sha256:" + hex.EncodeToString(k[:6]) }

// verdict is the API server's answer about one token: the identity it authenticates, or why it
// was refused (refusal != ""); trusted until `until`.
type verdict struct {
	user    string
	refusal string
	until   time.Time
}

// verdicts is a bounded cache of verdicts (the zero value is empty). It is not safe for
// concurrent use: the Authenticator holds its lock around every call.
type verdicts struct {
	m map[tokenKey]verdict
}

// get returns the verdict on k still valid at now.
func (c *verdicts) get(k tokenKey, now time.Time) (verdict, bool) {
	v, ok := c.m[k]
	if !ok || !now.Before(v.until) {
		return verdict{}, false
	}
	return v, true
}

// put keeps v for k, holding at most limit verdicts whatever tokens arrive: when full, it drops
// the verdicts expired at now, and if none was, one arbitrary verdict.
func (c *verdicts) put(k tokenKey, v verdict, now time.Time, limit int) {
	if c.m == nil {
		c.m = make(map[tokenKey]verdict)
	}
	if _, ok := c.m[k]; !ok && len(c.m) >= limit {
		for old, ov := range c.m {
			if !now.Before(ov.until) {
				delete(c.m, old)
			}
		}
		if len(c.m) >= limit {
			for old := range c.m {
				delete(c.m, old)
				break
			}
		}
	}
	c.m[k] = v
}

func (c *verdicts) len() int { return len(c.m) }
