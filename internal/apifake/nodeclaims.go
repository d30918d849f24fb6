package apifake

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	restfake "k8s.io/client-go/rest/fake"
)

// NodeClaim is what the Cluster keeps of a Karpenter NodeClaim: what its CRD prints.
type NodeClaim struct{ Name, ProviderID, NodeName string }

// nodeClaimColumns are the columns Karpenter v1.14.1's NodeClaim CRD declares, in its order.
var nodeClaimColumns = []string{"Name", "Type", "Capacity", "Zone", "Node", "Ready", "Age", "ImageID", "ID", "NodePool", "NodeClass", "Drifted"}

// AddNodeClaims adds NodeClaims, served by REST as the API server prints them.
func (c *Cluster) AddNodeClaims(claims ...NodeClaim) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.claims = append(c.claims, claims...)
}

// REST is a REST client of the Cluster that answers what the function asks through raw requests:
// the NodeClaims as a meta.k8s.io Table (paged by limit/continue). Each request is logged as
// "list nodeclaims/" and obeys FailNext("list nodeclaims", …); any other path is a 404.
func (c *Cluster) REST() rest.Interface {
	return &restfake.RESTClient{
		NegotiatedSerializer: scheme.Codecs.WithoutConversion(),
		Client:               restfake.CreateHTTPClient(c.serveREST),
	}
}

func (c *Cluster) serveREST(req *http.Request) (*http.Response, error) {
	if req.URL.Path != "/apis/karpenter.sh/v1/nodeclaims" {
		return statusResponse(apierrors.NewNotFound(schema.GroupResource{}, req.URL.Path))
	}
	c.mu.Lock()
	c.calls = append(c.calls, "list nodeclaims/")
	err, fail := c.failNext["list nodeclaims"]
	delete(c.failNext, "list nodeclaims")
	if c.failAll != nil {
		err, fail = c.failAll, true
	}
	claims := append([]NodeClaim(nil), c.claims...)
	c.mu.Unlock()
	if fail {
		return statusResponse(err)
	}
	q := req.URL.Query()
	from, _ := strconv.Atoi(q.Get("continue"))
	to := len(claims)
	if limit, _ := strconv.Atoi(q.Get("limit")); limit > 0 && from+limit < to {
		to = from + limit
	}
	table := metav1.Table{TypeMeta: metav1.TypeMeta{APIVersion: "meta.k8s.io/v1", Kind: "Table"}}
	for _, name := range nodeClaimColumns {
		table.ColumnDefinitions = append(table.ColumnDefinitions, metav1.TableColumnDefinition{Name: name, Type: "string"})
	}
	for _, cl := range claims[min(from, to):to] {
		cells := make([]any, len(nodeClaimColumns))
		cells[0], cells[4], cells[8] = cl.Name, cl.NodeName, cl.ProviderID
		table.Rows = append(table.Rows, metav1.TableRow{Cells: cells})
	}
	if to < len(claims) {
		table.Continue = strconv.Itoa(to)
	}
	return jsonResponse(http.StatusOK, &table)
}

func statusResponse(err error) (*http.Response, error) {
	status := apierrors.APIStatus(apierrors.NewInternalError(err))
	if s, ok := err.(apierrors.APIStatus); ok {
		status = s
	}
	st := status.Status()
	st.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Status"}
	return jsonResponse(int(st.Code), &st)
}

func jsonResponse(code int, obj runtime.Object) (*http.Response, error) {
	b, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	return &http.Response{StatusCode: code, Header: http.Header{"Content-Type": []string{"application/json"}}, Body: io.NopCloser(bytes.NewReader(b))}, nil
}
