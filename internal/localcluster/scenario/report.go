package scenario

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// Titles name the scenarios in reports.
var Titles = map[string]string{
	"a": "a) pod deleted, retryStrategy OnError limit 2",
	"b": "b) pod deleted, no retry, exit handler",
	"c": "c) CronWorkflow Forbid: next scheduled run",
	"d": "d) status finalizer, Node deleted, PodGC",
	"e": "e) dry run",
}

func seconds(d, bound time.Duration) string {
	if d == notMeasurable {
		return "n/a (not stored)"
	}
	if d < 0 {
		if bound > 0 {
			return fmt.Sprintf("> %.0f s", bound.Seconds())
		}
		return "–"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// WriteTable writes the results as a Markdown table.
func WriteTable(w io.Writer, results []Result) {
	fmt.Fprintln(w, "| controller | scenario | mode | deletion → repair write | deletion → gate released | deletion → workflow moved | outcome |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range results {
		out := r.Outcome
		if r.Err != nil {
			out = "ERROR: " + r.Err.Error()
		}
		repair := seconds(r.Repair, 0)
		if r.Mode == Without {
			repair = "(no function)"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", r.Version, Titles[r.Scenario], r.Mode, repair,
			seconds(r.Released, r.Bound), seconds(r.Moved, r.Bound), strings.ReplaceAll(out, "|", "\\|"))
	}
}
