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
package fedmesh

import (
	"flag"
	"io"
	"strings"

	"k8s.io/cli-runtime/pkg/printers"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
)

// Much of what the plugin prints is chosen by others than the user who runs
// it: a member's administrator writes its Service and ServiceExport names
// and the messages of its export conditions, its API server says its
// version and words its errors, and whoever may write the control plane's
// Clusters and policies chooses their names, hosts and keys. A terminal
// obeys an escape sequence in any of them: it may retitle the window, clear
// the screen or rewrite lines printed earlier, so that "Ready" reads where
// the member is not (the class of kubectl's CVE-2021-25743). Everything the
// plugin prints therefore goes through printers.EscapeTerminal, as kubectl's
// own tables do, by writing through an escapingWriter.

// escapingWriter writes what it is given with the terminal's control
// characters made visible by printers.EscapeTerminal (ESC as "^[", CR as
// "\r"), so no byte written through it can drive the terminal.
type escapingWriter struct {
	w io.Writer
}

// escaping returns a writer that escapes what it writes to w. Every
// function of the plugin that prints wraps its writer with it; wrapping
// twice is the same as once.
func escaping(w io.Writer) io.Writer {
	if _, ok := w.(escapingWriter); ok {
		return w
	}
	return escapingWriter{w: w}
}

// Write writes p escaped. The characters escaped are single bytes, so a
// sequence split across two writes is escaped all the same. It reports
// len(p) on success, as the callers (text/tabwriter among them) count what
// they gave, not what reached w.
func (e escapingWriter) Write(p []byte) (int, error) {
	if err := printers.WriteEscaped(e.w, string(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// cellBreaks are the characters that would end a cell or a row of a table
// early: tab, newline and the vertical tab and form feed, which
// text/tabwriter also takes as line breaks.
var cellBreaks = strings.NewReplacer("\t", " ", "\n", " ", "\v", " ", "\f", " ")

// cell returns s as one cell of a table, or one field of a line: escaped,
// and on one line with no tab, so that a message cannot add a row or shift
// a column (a forged row "cluster-2 ... True" under the real one).
// Escaping before text/tabwriter measures the cell keeps the columns
// aligned.
func cell(s string) string {
	return printers.EscapeTerminal(cellBreaks.Replace(s))
}

// warningsTo returns the handler of the warnings an API server sends with
// its answers (a member's, which its administrator may make say anything,
// or the control plane's, which may quote an object): each is written once
// to w, escaped, as "Warning: ..." like kubectl does, rather than logged.
func warningsTo(w io.Writer) rest.WarningHandler {
	return rest.NewWarningWriter(escaping(w), rest.WarningWriterOptions{Deduplicate: true})
}

// logTo sends what client-go logs with klog (at the default verbosity,
// its warnings and errors) to w, escaped, and once: klog quotes a message
// on one line but writes a value of several lines as it is.
func logTo(w io.Writer) {
	fs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(fs)
	for name, value := range map[string]string{
		"logtostderr":     "false",
		"alsologtostderr": "false",
		// Without a log file, klog writes what reaches this threshold
		// straight to os.Stderr; a fatal error ends the plugin anyway.
		"stderrthreshold": "FATAL",
		// Else an error is written once per severity below it too.
		"one_output": "true",
	} {
		_ = fs.Set(name, value)
	}
	klog.SetOutput(escaping(w))
}
