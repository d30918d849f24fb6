// Package micro holds the Go benchmarks that the benchmark command (go run -tags e2e ./test/bench)
// runs with `go test -bench` for the figures that need no cluster: the irrelevant event and a
// 5,000-node compressed workflow, both through the production wiring (wiring.FromClients with the
// default configuration) over fake clientsets that count every API call. Figures are reported
// (docs/dev/BENCHMARKS.md), never asserted as timings.
package micro
