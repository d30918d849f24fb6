package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// keys returns every variable Load may read, ADH_X and envconfig's fallback, the bare X.
func keys(t *testing.T) (prefixed, bare []string) {
	t.Helper()
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		tag := typ.Field(i).Tag.Get("envconfig")
		if tag == "" {
			t.Fatalf("field %s has no envconfig tag", typ.Field(i).Name)
		}
		prefixed = append(prefixed, Prefix+"_"+tag)
		bare = append(bare, tag)
	}
	return prefixed, bare
}

// everyDefault sets every key to its default, as the chart's ConfigMap sets every key.
func everyDefault(t *testing.T) map[string]string {
	prefixed, _ := keys(t)
	m := map[string]string{}
	typ := reflect.TypeOf(Config{})
	for i := range typ.NumField() {
		m[prefixed[i]] = typ.Field(i).Tag.Get("default")
	}
	return m
}

// FromMap reads a map as Load reads the same variables from the environment: the same Config,
// the same errors (a pod reads the settings ConfigMap as its environment).
func TestFromMapIsLoad(t *testing.T) {
	cases := []struct {
		name string
		m    map[string]string
		err  bool
	}{
		{"nothing set: the defaults", nil, false},
		{"every key set to its default", everyDefault(t), false},
		{"as the chart renders them", map[string]string{
			"ADH_NAMESPACES": "", "ADH_EXCLUDED_NAMESPACES": "kube-system", "ADH_INSTANCE_ID": "", "ADH_DRY_RUN": "false",
			"ADH_LOG_LEVEL": "info", "ADH_NODE_ERROR_GRACE": "60s", "ADH_CONTROLLER_WAIT": "60s", "ADH_CONFLICT_RETRIES": "5",
			"ADH_NODE_REPAIR_WORKERS": "8", "ADH_EVENT_TIMEOUT": "10s", "ADH_MAX_BODY_BYTES": "4194304", "ADH_ALLOWED_SOURCES": "",
			"ADH_KUBE_QPS": "100", "ADH_KUBE_BURST": "200", "ADH_SWEEP_BUDGET": "20s", "ADH_SWEEP_GRACE": "2m", "ADH_SWEEP_PAGE_SIZE": "100",
			"ADH_STATE_NAMESPACE": "argo-disruption-handler", "ADH_OIDC_REQUIRED": "false",
			"ADH_OIDC_AUDIENCE":   "serving.knative.dev/service/argo-disruption-handler/argo-disruption-handler",
			"ADH_OIDC_SUBJECTS":   "system:serviceaccount:argo-disruption-handler:*-oidc-eventing.knative.dev-trigger",
			"ADH_METRICS_ADDRESS": "", "ADH_NOTIFICATION_SINK": "", "ADH_NOTIFICATION_TIMEOUT": "2s",
		}, false},
		{"lists cleaned", map[string]string{
			"ADH_NAMESPACES": " argo, ,etl,", "ADH_EXCLUDED_NAMESPACES": "", "ADH_ALLOWED_SOURCES": "  ", "ADH_OIDC_SUBJECTS": "a , b",
			"ADH_NOTIFICATION_SINK": " http://sink.example/x ",
		}, false},
		{"set but empty is not unset", map[string]string{"ADH_METRICS_ADDRESS": "", "ADH_INSTANCE_ID": ""}, false},
		{"numbers as envconfig parses them", map[string]string{
			"ADH_CONFLICT_RETRIES": "0x10", "ADH_SWEEP_PAGE_SIZE": "050", "ADH_KUBE_QPS": "12.5", "ADH_DRY_RUN": "1", "ADH_SWEEP_GRACE": "1h30m",
		}, false},
		{"the bare name when ADH_ is unset", map[string]string{"NAMESPACES": "argo", "LOG_LEVEL": "debug"}, false},
		{"ADH_ over the bare name", map[string]string{"ADH_LOG_LEVEL": "warn", "LOG_LEVEL": "debug"}, false},
		{"not parsable", map[string]string{"ADH_SWEEP_GRACE": "soon"}, true},
		{"int not parsable", map[string]string{"ADH_KUBE_BURST": "2,0"}, true},
		{"bool not parsable", map[string]string{"ADH_OIDC_REQUIRED": "yes"}, true},
		{"not valid: every problem named", map[string]string{"ADH_SWEEP_GRACE": "5s", "ADH_NAMESPACES": "Argo_NS", "ADH_LOG_LEVEL": "loud"}, true},
	}
	prefixed, bare := keys(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range append(prefixed, bare...) {
				t.Setenv(k, "") // restored when the test ends
				os.Unsetenv(k)
			}
			for k, v := range tc.m {
				t.Setenv(k, v)
			}
			want, wantErr := Load()
			got, err := FromMap(tc.m)
			if (err != nil) != tc.err || (wantErr != nil) != tc.err {
				t.Fatalf("FromMap error %v, Load error %v; want an error: %v", err, wantErr, tc.err)
			}
			if err != nil {
				if err.Error() != wantErr.Error() {
					t.Errorf("FromMap error\n%v\nLoad error\n%v", err, wantErr)
				}
				return
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("FromMap\n%+v\nLoad\n%+v", got, want)
			}
		})
	}
}

// What FromMap cleans and refuses, as Load does; the process environment does not count.
func TestFromMap(t *testing.T) {
	t.Setenv("ADH_SWEEP_GRACE", "9m")
	t.Setenv("ADH_LOG_LEVEL", "loud")
	c, err := FromMap(map[string]string{"ADH_NAMESPACES": " argo, ,etl,", "ADH_EXCLUDED_NAMESPACES": "", "ADH_INSTANCE_ID": "ci", "ADH_SWEEP_GRACE": "5m"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(c.Namespaces, "|") != "argo|etl" || c.ExcludedNamespaces != nil || c.ControllerInstanceID != "ci" || c.SweepGrace.String() != "5m0s" {
		t.Errorf("config %+v", c)
	}
	_, err = FromMap(map[string]string{"ADH_SWEEP_GRACE": "5s", "ADH_EVENT_TIMEOUT": "40s"})
	if err == nil || !strings.Contains(err.Error(), "ADH_SWEEP_GRACE") || !strings.Contains(err.Error(), "ADH_EVENT_TIMEOUT") {
		t.Errorf("error %v, want both settings named", err)
	}
}

// FromMap puts the process environment back as it found it.
func TestFromMapRestoresTheEnvironment(t *testing.T) {
	t.Setenv("ADH_LOG_LEVEL", "debug")
	t.Setenv("NAMESPACES", "bare")
	os.Unsetenv("ADH_INSTANCE_ID")
	if _, err := FromMap(map[string]string{"ADH_LOG_LEVEL": "warn", "ADH_INSTANCE_ID": "ci"}); err != nil {
		t.Fatal(err)
	}
	if v := os.Getenv("ADH_LOG_LEVEL"); v != "debug" {
		t.Errorf("ADH_LOG_LEVEL %q after FromMap, want debug", v)
	}
	if v := os.Getenv("NAMESPACES"); v != "bare" {
		t.Errorf("NAMESPACES %q after FromMap, want bare", v)
	}
	if _, set := os.LookupEnv("ADH_INSTANCE_ID"); set {
		t.Error("ADH_INSTANCE_ID set after FromMap")
	}
}
