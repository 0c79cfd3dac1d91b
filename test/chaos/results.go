/*
Copyright The fedmesh Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

	http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package chaos

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Result is one fault's figures, a row of results.json. A figure that does
// not apply to the fault (an etcd restart withdraws no endpoints) is null.
type Result struct {
	// Fault names the fault; rows are merged by it.
	Fault string `json:"fault"`
	// DetectSeconds is from the fault to fedmesh saying so (the Cluster
	// Ready=False, for a member fault).
	DetectSeconds *float64 `json:"detectSeconds"`
	// WithdrawSeconds is from the fault to the member's endpoints leaving
	// every control-plane import.
	WithdrawSeconds *float64 `json:"withdrawSeconds"`
	// RecoverSeconds is from the end of the fault to fedmesh serving again
	// as before (the member Ready, its endpoints back).
	RecoverSeconds *float64 `json:"recoverSeconds"`
	// ConvergeSeconds is from the end of the churn, after the fault, to
	// the invariant checker finding exactly the truth.
	ConvergeSeconds *float64 `json:"convergeSeconds"`
	// WritesLost counts acknowledged writes whose effect is missing at the
	// end (target 0).
	WritesLost int `json:"writesLost"`
	// StaleObjects counts objects held at the end that the truth does not
	// want, or holds otherwise (target 0).
	StaleObjects int `json:"staleObjects"`
	// Relists counts the relists of an informer-style client of the
	// control plane's ServiceImports during the test.
	Relists int `json:"relists"`
	// Writes is how many churn writes the members acknowledged, and
	// WritesFailed how many failed or went unanswered during the fault.
	Writes       int `json:"writes"`
	WritesFailed int `json:"writesFailed"`
	// Passed is whether every target of the fault was met.
	Passed bool `json:"passed"`
	// Notes say what else was seen, and why a target was missed.
	Notes string `json:"notes,omitempty"`
	// Config is the suite's configuration ("small" or "full") and
	// MeasuredAt when the row was written.
	Config     string    `json:"config"`
	MeasuredAt time.Time `json:"measuredAt"`
}

// Seconds is d in seconds, rounded to the millisecond, for a Result.
func Seconds(d time.Duration) *float64 {
	s := math.Round(d.Seconds()*1000) / 1000
	return &s
}

// Results is the content of results.json.
type Results struct {
	// Machine describes where the figures were measured.
	Machine string   `json:"machine"`
	Results []Result `json:"results"`
}

var resultsMu sync.Mutex

// Record merges r into the configuration's results file, replacing the
// row of the same fault, and logs it.
func Record(t testing.TB, cfg Config, r Result) {
	t.Helper()
	r.Config = cfg.Name
	if r.MeasuredAt.IsZero() {
		r.MeasuredAt = time.Now().UTC().Round(time.Second)
	}
	b, _ := json.Marshal(r)
	t.Logf("result: %s", b)
	if err := MergeResults(cfg.ResultsPath, r); err != nil {
		t.Errorf("recording the result in %s: %v", cfg.ResultsPath, err)
	}
}

// MergeResults merges rows into the results file at path, replacing rows
// of the same fault and keeping the others, sorted by fault. Separate test
// processes may merge at once: the file is locked meanwhile.
func MergeResults(path string, rows ...Result) error {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	var all Results
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(b, &all); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	for _, r := range rows {
		i := indexOf(all.Results, r.Fault)
		if i < 0 {
			all.Results = append(all.Results, r)
		} else {
			all.Results[i] = r
		}
	}
	sort.Slice(all.Results, func(i, j int) bool { return all.Results[i].Fault < all.Results[j].Fault })
	all.Machine = machine()
	out, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(out, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func indexOf(rows []Result, fault string) int {
	for i, r := range rows {
		if r.Fault == fault {
			return i
		}
	}
	return -1
}

// machine describes the machine: its CPUs, as the figures depend on them.
func machine() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	n, model := 0, ""
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "processor") {
			n++
		}
		if model == "" && strings.HasPrefix(line, "model name") {
			if _, v, ok := strings.Cut(line, ":"); ok {
				model = strings.TrimSpace(v)
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s)", n, model)
}
