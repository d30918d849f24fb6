// Settings read from a map keyed like the environment: the data of the chart's settings
// ConfigMap, which the function's pod gets as its environment (envFrom) and the sweep command
// reads from the API server.

package config

import (
	"os"
	"reflect"
	"sync"
)

// environment serializes FromMap's use of the process environment.
var environment sync.Mutex

// FromMap reads the configuration from m, keyed as the environment is (ADH_NAMESPACES, …), and
// validates it: the Config that Load makes in a pod whose environment holds m. envconfig reads only
// the process environment, so FromMap gives it exactly m's settings for the call (every variable
// Load may read, ADH_X and envconfig's bare X, unset unless m sets it) and then puts the
// environment back. Meant for a command's start, not for a process that reads its environment
// concurrently.
func FromMap(m map[string]string) (*Config, error) {
	environment.Lock()
	defer environment.Unlock()
	type saved struct {
		value string
		set   bool
	}
	before := map[string]saved{}
	for _, key := range variables(m) {
		if _, seen := before[key]; seen {
			continue
		}
		v, ok := os.LookupEnv(key)
		before[key] = saved{v, ok}
		if err := os.Unsetenv(key); err != nil {
			return nil, err
		}
	}
	defer func() {
		for key, s := range before {
			if s.set {
				os.Setenv(key, s.value)
			} else {
				os.Unsetenv(key)
			}
		}
	}()
	for k, v := range m {
		if err := os.Setenv(k, v); err != nil {
			return nil, err
		}
	}
	return Load()
}

// variables are the keys of m and every variable Load may read: ADH_X, and the bare X that
// envconfig falls back to.
func variables(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		if tag := typ.Field(i).Tag.Get("envconfig"); tag != "" {
			out = append(out, Prefix+"_"+tag, tag)
		}
	}
	return out
}
