// kstatus-check prints what the kstatus library (sigs.k8s.io/cli-utils/pkg/kstatus/status), the
// library Flux's health checks use, computes for Kubernetes objects given as JSON.
//
// Usage: kstatus-check [FILE|-]   (default: stdin)
//
// The input is one object, or a List (`kubectl get -o json` of several objects). The output is one
// JSON object {"apiVersion","kind","namespace","name","status","message","conditions"} per input
// object; a List gives a JSON array in the same order. status is one of Current, InProgress, Failed,
// Terminating, Unknown. Exit 2 on unreadable input or an error from status.Compute.
//
// Built by e2e/build-kstatus.sh from the Go module proxy (its go.mod is generated there).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	APIVersion string             `json:"apiVersion"`
	Kind       string             `json:"kind"`
	Namespace  string             `json:"namespace,omitempty"`
	Name       string             `json:"name"`
	Status     string             `json:"status"`
	Message    string             `json:"message"`
	Conditions []status.Condition `json:"conditions"`
}

func compute(obj map[string]interface{}) (result, error) {
	u := &unstructured.Unstructured{Object: obj}
	res, err := status.Compute(u)
	if err != nil {
		return result{}, fmt.Errorf("%s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	conds := res.Conditions
	if conds == nil {
		conds = []status.Condition{}
	}
	return result{
		APIVersion: u.GetAPIVersion(),
		Kind:       u.GetKind(),
		Namespace:  u.GetNamespace(),
		Name:       u.GetName(),
		Status:     res.Status.String(),
		Message:    res.Message,
		Conditions: conds,
	}, nil
}

func run(in io.Reader, out io.Writer) error {
	raw, err := io.ReadAll(in)
	if err != nil {
		return err
	}
	// Decoded as the API machinery does (whole numbers as int64), so metadata.generation and
	// status.observedGeneration read as they do in a controller.
	var obj map[string]interface{}
	if err := kjson.Unmarshal(raw, &obj); err != nil {
		return fmt.Errorf("input is not a JSON object: %w", err)
	}
	enc := json.NewEncoder(out)
	kind, _ := obj["kind"].(string)
	items, isList := obj["items"].([]interface{})
	if !isList || !strings.HasSuffix(kind, "List") {
		r, err := compute(obj)
		if err != nil {
			return err
		}
		return enc.Encode(r)
	}
	results := make([]result, 0, len(items))
	for i, it := range items {
		m, ok := it.(map[string]interface{})
		if !ok {
			return fmt.Errorf("items[%d] is not an object", i)
		}
		r, err := compute(m)
		if err != nil {
			return err
		}
		results = append(results, r)
	}
	return enc.Encode(results)
}

func main() {
	in := io.Reader(os.Stdin)
	if len(os.Args) > 2 {
		fmt.Fprintln(os.Stderr, "usage: kstatus-check [FILE|-]")
		os.Exit(2)
	}
	if len(os.Args) == 2 && os.Args[1] != "-" {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "kstatus-check:", err)
			os.Exit(2)
		}
		defer f.Close()
		in = f
	}
	if err := run(in, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus-check:", err)
		os.Exit(2)
	}
}
