package metrics

// A PromQL reader for the monitoring files' tests. github.com/prometheus/prometheus (whose
// promql/parser is the real one) is not a dependency of the module and is too heavy to add for a
// test, so this recursive-descent reader covers the grammar the files use: selectors with
// matchers, range and subquery brackets, offset, functions, aggregations with by/without, binary
// operators with bool/on/ignoring/group_left/group_right. It returns the metric names of the
// selectors, and an error for what it cannot read (an unbalanced bracket, an unknown function,
// two operands in a row, a bad duration).

import (
	"fmt"
	"regexp"
	"strings"
)

// promqlFunctions are PromQL's functions (Prometheus 2.x and 3.x).
var promqlFunctions = wordSet(`abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes
	clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month deg delta
	deriv double_exponential_smoothing exp floor histogram_avg histogram_count histogram_fraction histogram_quantile
	histogram_stddev histogram_stdvar histogram_sum holt_winters hour idelta increase irate label_join label_replace
	last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi predict_linear
	present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh sort sort_by_label
	sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp vector year`)

// promqlAggregations are PromQL's aggregation operators.
var promqlAggregations = wordSet(`avg bottomk count count_values group limit_ratio limitk max min quantile stddev stdvar sum topk`)

// promqlKeywords may not name a metric.
var promqlKeywords = wordSet(`and or unless atan2 by without on ignoring group_left group_right bool offset`)

func wordSet(words string) map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(words) {
		m[w] = true
	}
	return m
}

var (
	promqlDuration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)
	promqlNumber   = regexp.MustCompile(`^([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][-+]?[0-9]+)?$`)
	// grafanaVariables are replaced by a duration before reading: Grafana substitutes them.
	grafanaVariables = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "6h")
)

type tokenKind int

const (
	tokEOF tokenKind = iota
	tokIdent
	tokNumber
	tokDuration
	tokString
	tokOp    // arithmetic, comparison and matcher operators
	tokPunct // ( ) { } [ ] , :
)

type token struct {
	kind tokenKind
	text string
}

// lexPromQL splits expr into tokens.
func lexPromQL(expr string) ([]token, error) {
	var toks []token
	s := expr
	for len(s) > 0 {
		c := s[0]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			s = s[1:]
		case c == '#': // a comment runs to the end of the line
			if i := strings.IndexByte(s, '\n'); i >= 0 {
				s = s[i:]
			} else {
				s = ""
			}
		case isIdentStart(c):
			i := 1
			for i < len(s) && (isIdentStart(s[i]) || isDigit(s[i]) || s[i] == ':') {
				i++
			}
			toks, s = append(toks, token{tokIdent, s[:i]}), s[i:]
		case isDigit(c) || (c == '.' && len(s) > 1 && isDigit(s[1])):
			i := 1
			for i < len(s) && (isDigit(s[i]) || s[i] == '.' || isLetter(s[i]) ||
				((s[i] == '+' || s[i] == '-') && (s[i-1] == 'e' || s[i-1] == 'E'))) {
				i++
			}
			word := s[:i]
			switch {
			case promqlNumber.MatchString(word):
				toks = append(toks, token{tokNumber, word})
			case promqlDuration.MatchString(word):
				toks = append(toks, token{tokDuration, word})
			default:
				return nil, fmt.Errorf("%q is neither a number nor a duration", word)
			}
			s = s[i:]
		case c == '"' || c == '\'' || c == '`':
			i := 1
			for i < len(s) && s[i] != c {
				if s[i] == '\\' && c != '`' {
					i++
				}
				i++
			}
			if i >= len(s) {
				return nil, fmt.Errorf("unterminated string %s", s)
			}
			toks, s = append(toks, token{tokString, s[:i+1]}), s[i+1:]
		case strings.ContainsRune("(){}[],:", rune(c)):
			toks, s = append(toks, token{tokPunct, s[:1]}), s[1:]
		default:
			op := ""
			for _, o := range []string{"==", "!=", "<=", ">=", "=~", "!~", "=", "<", ">", "+", "-", "*", "/", "%", "^"} {
				if strings.HasPrefix(s, o) {
					op = o
					break
				}
			}
			if op == "" {
				return nil, fmt.Errorf("unexpected character %q in %q", c, s)
			}
			toks, s = append(toks, token{tokOp, op}), s[len(op):]
		}
	}
	return append(toks, token{kind: tokEOF}), nil
}

// isIdentStart leaves out the colon recording rules put inside names, which would swallow a
// subquery's "[5m:1m]".
func isIdentStart(c byte) bool { return isLetter(c) || c == '_' }
func isLetter(c byte) bool     { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }
func isDigit(c byte) bool      { return c >= '0' && c <= '9' }

type promqlReader struct {
	toks    []token
	pos     int
	metrics []string
}

// promqlMetrics reads expr (Grafana's interval variables allowed) and returns the metric names
// of its selectors, in order.
func promqlMetrics(expr string) ([]string, error) {
	toks, err := lexPromQL(grafanaVariables.Replace(expr))
	if err != nil {
		return nil, err
	}
	p := &promqlReader{toks: toks}
	if err := p.expr(); err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tokEOF {
		return nil, fmt.Errorf("unexpected %q after the expression", t.text)
	}
	return p.metrics, nil
}

func (p *promqlReader) peek() token { return p.toks[p.pos] }
func (p *promqlReader) next() token {
	t := p.toks[p.pos]
	if t.kind != tokEOF {
		p.pos++
	}
	return t
}

func (p *promqlReader) is(kind tokenKind, text string) bool {
	t := p.peek()
	return t.kind == kind && t.text == text
}

func (p *promqlReader) expect(kind tokenKind, text string) error {
	if t := p.next(); t.kind != kind || t.text != text {
		return fmt.Errorf("expected %q, found %q", text, t.text)
	}
	return nil
}

// expr reads operands joined by binary operators (precedence does not matter for reading).
func (p *promqlReader) expr() error {
	if err := p.unary(); err != nil {
		return err
	}
	for p.binaryOperator() {
		if err := p.binaryModifiers(); err != nil {
			return err
		}
		if err := p.unary(); err != nil {
			return err
		}
	}
	return nil
}

// binaryOperator consumes a binary operator if one is next.
func (p *promqlReader) binaryOperator() bool {
	t := p.peek()
	if (t.kind == tokOp && t.text != "=" && t.text != "=~" && t.text != "!~") ||
		(t.kind == tokIdent && (t.text == "and" || t.text == "or" || t.text == "unless" || t.text == "atan2")) {
		p.next()
		return true
	}
	return false
}

func (p *promqlReader) binaryModifiers() error {
	if p.is(tokIdent, "bool") {
		p.next()
	}
	if p.is(tokIdent, "on") || p.is(tokIdent, "ignoring") {
		p.next()
		if err := p.labelList(); err != nil {
			return err
		}
		if p.is(tokIdent, "group_left") || p.is(tokIdent, "group_right") {
			p.next()
			if p.is(tokPunct, "(") {
				return p.labelList()
			}
		}
	}
	return nil
}

func (p *promqlReader) unary() error {
	if p.is(tokOp, "-") || p.is(tokOp, "+") {
		p.next()
		return p.unary()
	}
	return p.postfix()
}

// postfix reads an operand with its range or subquery brackets and offset.
func (p *promqlReader) postfix() error {
	selector, err := p.primary()
	if err != nil {
		return err
	}
	if p.is(tokPunct, "[") {
		p.next()
		if t := p.next(); t.kind != tokDuration {
			return fmt.Errorf("expected a duration in [], found %q", t.text)
		}
		subquery := p.is(tokPunct, ":")
		if subquery {
			p.next()
			if p.peek().kind == tokDuration {
				p.next()
			}
		}
		if !selector && !subquery {
			return fmt.Errorf("a range applies to a selector only (a subquery needs a colon)")
		}
		if err := p.expect(tokPunct, "]"); err != nil {
			return err
		}
	}
	if p.is(tokIdent, "offset") {
		p.next()
		if p.is(tokOp, "-") {
			p.next()
		}
		if t := p.next(); t.kind != tokDuration {
			return fmt.Errorf("expected a duration after offset, found %q", t.text)
		}
	}
	return nil
}

// primary reads one operand; selector reports whether it was a plain selector.
func (p *promqlReader) primary() (selector bool, err error) {
	t := p.next()
	switch {
	case t.kind == tokNumber || t.kind == tokString:
		return false, nil
	case t.kind == tokPunct && t.text == "(":
		if err := p.expr(); err != nil {
			return false, err
		}
		return false, p.expect(tokPunct, ")")
	case t.kind == tokPunct && t.text == "{":
		return true, p.matchers()
	case t.kind != tokIdent:
		return false, fmt.Errorf("expected an operand, found %q", t.text)
	case promqlAggregations[t.text]:
		grouped := false
		if p.is(tokIdent, "by") || p.is(tokIdent, "without") {
			p.next()
			if err := p.labelList(); err != nil {
				return false, err
			}
			grouped = true
		}
		if err := p.arguments(t.text); err != nil {
			return false, err
		}
		if !grouped && (p.is(tokIdent, "by") || p.is(tokIdent, "without")) {
			p.next()
			return false, p.labelList()
		}
		return false, nil
	case p.is(tokPunct, "("):
		if !promqlFunctions[t.text] {
			return false, fmt.Errorf("unknown function %s", t.text)
		}
		return false, p.arguments(t.text)
	case promqlKeywords[t.text]:
		return false, fmt.Errorf("keyword %s where an operand belongs", t.text)
	default:
		p.metrics = append(p.metrics, t.text)
		if p.is(tokPunct, "{") {
			p.next()
			return true, p.matchers()
		}
		return true, nil
	}
}

// arguments reads a call's parenthesised, comma-separated arguments.
func (p *promqlReader) arguments(name string) error {
	if err := p.expect(tokPunct, "("); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if p.is(tokPunct, ")") {
		p.next()
		return nil
	}
	for {
		if err := p.expr(); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		if !p.is(tokPunct, ",") {
			break
		}
		p.next()
	}
	if err := p.expect(tokPunct, ")"); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// matchers reads label matchers up to and including the closing brace.
func (p *promqlReader) matchers() error {
	for !p.is(tokPunct, "}") {
		if t := p.next(); t.kind != tokIdent {
			return fmt.Errorf("expected a label name in {}, found %q", t.text)
		}
		if op := p.next(); op.kind != tokOp || (op.text != "=" && op.text != "!=" && op.text != "=~" && op.text != "!~") {
			return fmt.Errorf("expected a matcher operator, found %q", op.text)
		}
		if t := p.next(); t.kind != tokString {
			return fmt.Errorf("expected a quoted label value, found %q", t.text)
		}
		if !p.is(tokPunct, ",") {
			break
		}
		p.next()
	}
	return p.expect(tokPunct, "}")
}

// labelList reads "(label, …)".
func (p *promqlReader) labelList() error {
	if err := p.expect(tokPunct, "("); err != nil {
		return err
	}
	for !p.is(tokPunct, ")") {
		if t := p.next(); t.kind != tokIdent {
			return fmt.Errorf("expected a label name, found %q", t.text)
		}
		if !p.is(tokPunct, ",") {
			break
		}
		p.next()
	}
	return p.expect(tokPunct, ")")
}
