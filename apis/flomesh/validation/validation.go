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

// Package validation holds the static validation of the internal flomesh.io
// types: what can be decided from an object alone, without looking at other
// objects (whether a target cluster is registered is admission's business).
// Every error names its field, so the API server can answer with
// apierrors.NewInvalid and kubectl can point at the offending field.
//
// Validation runs after defaulting, so fields that have defaults (cluster
// key parts, gateway port, lbType) are required here.
package validation

import (
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/sets"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/fedmesh/fedmesh/apis/flomesh"
)

// ValidateClusterName checks the name of a Cluster. It must be a DNS-1123
// label because it is the last part of the cluster key, and every part of a
// key is a label.
var ValidateClusterName = apivalidation.NameIsDNSLabel

// ValidateGlobalTrafficPolicyName checks the name of a GlobalTrafficPolicy.
// A policy governs the Service of the same name, and Service names are
// labels, so a policy with any other name could never apply to anything.
var ValidateGlobalTrafficPolicyName = apivalidation.NameIsDNSLabel

// ValidateServiceExportName checks the name of a ServiceExport, which is the
// name of the Service it exports.
var ValidateServiceExportName = apivalidation.NameIsDNSLabel

var clusterKeyPartNames = [flomesh.ClusterKeyParts]string{"region", "zone", "group", "name"}

// ParseClusterKey splits a cluster key region/zone/group/name into its
// parts. It fails, with a message fit for a field error, unless the key has
// exactly four parts and each is a DNS-1123 label; so every key it accepts is
// the key of some possible Cluster.
func ParseClusterKey(key string) (region, zone, group, name string, err error) {
	if key == "" {
		return "", "", "", "", fmt.Errorf("must have the form region/zone/group/name")
	}
	parts := strings.Split(key, "/")
	if len(parts) != flomesh.ClusterKeyParts {
		return "", "", "", "", fmt.Errorf("must have the form region/zone/group/name (%d parts), got %d",
			flomesh.ClusterKeyParts, len(parts))
	}
	var problems []string
	for i, part := range parts {
		if part == "" {
			problems = append(problems, fmt.Sprintf("%s must not be empty", clusterKeyPartNames[i]))
			continue
		}
		for _, msg := range utilvalidation.IsDNS1123Label(part) {
			problems = append(problems, fmt.Sprintf("%s %q: %s", clusterKeyPartNames[i], part, msg))
		}
	}
	if len(problems) > 0 {
		return "", "", "", "", fmt.Errorf("must have the form region/zone/group/name with each part a DNS-1123 label: %s",
			strings.Join(problems, "; "))
	}
	return parts[0], parts[1], parts[2], parts[3], nil
}

// ValidateClusterKey checks that key is a well-formed cluster key. It does
// not check that a Cluster with that key exists.
func ValidateClusterKey(key string, fldPath *field.Path) field.ErrorList {
	if key == "" {
		return field.ErrorList{field.Required(fldPath, "a cluster key region/zone/group/name is required")}
	}
	if _, _, _, _, err := ParseClusterKey(key); err != nil {
		return field.ErrorList{field.Invalid(fldPath, key, err.Error())}
	}
	return nil
}

// validateClusterKeys checks a list of cluster keys and that none repeats.
// Repeats are reported only for well-formed keys: a malformed key already has
// its error, and a second one would say nothing new.
func validateClusterKeys(keys []string, pathOf func(i int) *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	seen := sets.New[string]()
	for i, key := range keys {
		errs := ValidateClusterKey(key, pathOf(i))
		allErrs = append(allErrs, errs...)
		if len(errs) > 0 {
			continue
		}
		if seen.Has(key) {
			allErrs = append(allErrs, field.Duplicate(pathOf(i), key))
		}
		seen.Insert(key)
	}
	return allErrs
}

func validateKeyPart(value string, fldPath *field.Path) field.ErrorList {
	if value == "" {
		return field.ErrorList{field.Required(fldPath, "part of the cluster key; defaults to \"default\"")}
	}
	var allErrs field.ErrorList
	for _, msg := range utilvalidation.IsDNS1123Label(value) {
		allErrs = append(allErrs, field.Invalid(fldPath, value, msg))
	}
	return allErrs
}

func validatePort(port int32, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	for _, msg := range utilvalidation.IsValidPortNum(int(port)) {
		allErrs = append(allErrs, field.Invalid(fldPath, port, msg))
	}
	return allErrs
}

// validateGatewayHost accepts an IP address or a DNS name: the host part of
// the URLs the other members dial, so a port, scheme or brackets here would
// produce a broken URL later.
func validateGatewayHost(host string, fldPath *field.Path) field.ErrorList {
	if host == "" {
		return field.ErrorList{field.Required(fldPath, "the address of the cluster's ingress gateway")}
	}
	if net.ParseIP(host) != nil {
		return nil
	}
	if msgs := utilvalidation.IsDNS1123Subdomain(host); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(fldPath, host,
			"must be an IP address or a DNS-1123 subdomain, without scheme or port: "+strings.Join(msgs, "; "))}
	}
	return nil
}

// ValidateCluster checks a Cluster on creation. The policy says which
// unsafe kubeconfig features the server was told to accept.
func ValidateCluster(c *flomesh.Cluster, policy KubeconfigPolicy) field.ErrorList {
	allErrs := apivalidation.ValidateObjectMeta(&c.ObjectMeta, false, ValidateClusterName, field.NewPath("metadata"))
	allErrs = append(allErrs, validateClusterSpec(&c.Spec, policy, field.NewPath("spec"))...)
	return allErrs
}

func validateClusterSpec(spec *flomesh.ClusterSpec, policy KubeconfigPolicy, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	allErrs = append(allErrs, validateKeyPart(spec.Region, fldPath.Child("region"))...)
	allErrs = append(allErrs, validateKeyPart(spec.Zone, fldPath.Child("zone"))...)
	allErrs = append(allErrs, validateKeyPart(spec.Group, fldPath.Child("group"))...)
	allErrs = append(allErrs, validateGatewayHost(spec.GatewayHost, fldPath.Child("gatewayHost"))...)
	allErrs = append(allErrs, validatePort(spec.GatewayPort, fldPath.Child("gatewayPort"))...)
	switch ref := spec.CredentialsSecretRef; {
	case spec.Kubeconfig != "" && ref != nil:
		allErrs = append(allErrs, field.Forbidden(fldPath.Child("credentialsSecretRef"), "may not be set together with kubeconfig"))
	case ref != nil:
		for _, msg := range apivalidation.NameIsDNSSubdomain(ref.Name, false) {
			allErrs = append(allErrs, field.Invalid(fldPath.Child("credentialsSecretRef", "name"), ref.Name, msg))
		}
	case spec.Kubeconfig == "":
		allErrs = append(allErrs, field.Required(fldPath.Child("kubeconfig"),
			"the member's credentials: a kubeconfig, or credentialsSecretRef naming a Secret (kubectl fedmesh join writes one)"))
	default:
		allErrs = append(allErrs, ValidateKubeconfig(spec.Kubeconfig, policy, fldPath.Child("kubeconfig"))...)
	}
	return allErrs
}

// ValidateClusterUpdate checks a Cluster on update.
//
// A kubeconfig the update leaves as it was is not judged again, as
// Kubernetes ratchets validation that tightens: a Cluster stored under
// older rules can still be labelled, annotated and deleted. fedmesh never
// uses such a kubeconfig all the same (see ParseKubeconfig), and its
// Cluster reports why.
func ValidateClusterUpdate(newCluster, oldCluster *flomesh.Cluster, policy KubeconfigPolicy) field.ErrorList {
	allErrs := apivalidation.ValidateObjectMetaUpdate(&newCluster.ObjectMeta, &oldCluster.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, apivalidation.ValidateObjectMeta(&newCluster.ObjectMeta, false, ValidateClusterName, field.NewPath("metadata"))...)
	spec := field.NewPath("spec")
	for _, e := range validateClusterSpec(&newCluster.Spec, policy, spec) {
		if newCluster.Spec.Kubeconfig == oldCluster.Spec.Kubeconfig && isUnder(e.Field, spec.Child("kubeconfig")) {
			continue
		}
		allErrs = append(allErrs, e)
	}
	return allErrs
}

// isUnder reports whether a field path is path or one of its children.
func isUnder(fieldPath string, path *field.Path) bool {
	p := path.String()
	return fieldPath == p || strings.HasPrefix(fieldPath, p+".") || strings.HasPrefix(fieldPath, p+"[")
}

// ValidateClusterStatusUpdate checks a Cluster on update of its status.
func ValidateClusterStatusUpdate(newCluster, oldCluster *flomesh.Cluster) field.ErrorList {
	allErrs := apivalidation.ValidateObjectMetaUpdate(&newCluster.ObjectMeta, &oldCluster.ObjectMeta, field.NewPath("metadata"))
	fldPath := field.NewPath("status")
	status := &newCluster.Status
	allErrs = append(allErrs, metav1validation.ValidateConditions(status.Conditions, fldPath.Child("conditions"))...)
	allErrs = append(allErrs, apivalidation.ValidateNonnegativeField(int64(status.ExportCount), fldPath.Child("exportCount"))...)
	if status.ClusterKey != "" {
		allErrs = append(allErrs, ValidateClusterKey(status.ClusterKey, fldPath.Child("clusterKey"))...)
	}
	return allErrs
}

// minRedactedLength is the length from which a word of the kubeconfig is
// treated as a possible secret. Shorter words are too common to be worth
// scrubbing and would mangle the parser's own wording.
const minRedactedLength = 6

// kubeconfigVocabulary holds the words a kubeconfig has that are not
// secrets. Parser errors name them ("Config.clusters"), and scrubbing them
// would make the errors unreadable.
var kubeconfigVocabulary = sets.New(
	"Config", "apiVersion", "kind", "preferences", "colors", "extensions", "extension",
	"clusters", "cluster", "server", "tls-server-name", "insecure-skip-tls-verify",
	"certificate-authority", "certificate-authority-data", "proxy-url", "disable-compression",
	"contexts", "context", "current-context", "namespace", "users", "user", "name",
	"client-certificate", "client-certificate-data", "client-key", "client-key-data",
	"token", "tokenFile", "as", "as-uid", "as-groups", "as-user-extra",
	"act-as", "act-as-uid", "act-as-groups", "act-as-user-extra",
	"username", "password", "auth-provider", "config", "exec", "command", "args", "env",
	"value", "installHint", "provideClusterInfo", "interactiveMode",
	"client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1",
	"IfAvailable", "Never", "Always", "true", "false", "null",
)

const (
	// maxScannedErrorLength bounds the part of a parser message that is
	// scrubbed, so that a huge quoted value cannot make scrubbing costly.
	maxScannedErrorLength = 4096
	// maxParseErrorLength bounds a parser message quoted in an error.
	maxParseErrorLength = 256
	redacted            = "<redacted>"
)

func isKubeconfigSeparator(r rune) bool {
	return unicode.IsSpace(r) || strings.ContainsRune(`:,[]{}"'`+"`", r)
}

// secretCandidates returns the strings of a kubeconfig that a parser message
// might quote: its words as written and, when the YAML parses, its scalars as
// decoded (a quoted YAML value differs from its source text), each also in
// the escaped form that %q gives it.
func secretCandidates(kubeconfig string) []string {
	candidates := sets.New[string]()
	add := func(s string) {
		if len(s) < minRedactedLength || kubeconfigVocabulary.Has(s) {
			return
		}
		candidates.Insert(s)
		if q := strconv.Quote(s); q[1:len(q)-1] != s {
			candidates.Insert(q[1 : len(q)-1])
		}
	}
	for _, w := range strings.FieldsFunc(kubeconfig, isKubeconfigSeparator) {
		add(w)
	}
	var doc any
	if yaml.Unmarshal([]byte(kubeconfig), &doc) == nil {
		stack := []any{doc}
		for len(stack) > 0 {
			v := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			switch v := v.(type) {
			case string:
				add(v)
			case map[string]any:
				for k, e := range v {
					add(k)
					stack = append(stack, e)
				}
			case []any:
				stack = append(stack, v...)
			}
		}
	}
	return candidates.UnsortedList()
}

// redact removes from a parser message everything of the kubeconfig that
// could be a secret. The YAML and JSON decoders mostly report positions and
// types, but some errors quote values (an unknown kind or apiVersion), and a
// user who pastes a token where the kubeconfig belongs must not find it in
// an event or an audit log.
func redact(msg, kubeconfig string) string {
	covered := make([]bool, len(msg))
	if len(msg) > maxScannedErrorLength {
		msg = msg[:maxScannedErrorLength]
		covered = covered[:maxScannedErrorLength]
		// The cut may leave the start of a secret that no longer matches
		// any candidate whole.
		end := len(msg)
		for end > 0 {
			r, size := utf8.DecodeLastRuneInString(msg[:end])
			if isKubeconfigSeparator(r) {
				break
			}
			end -= size
		}
		for i := end; i < len(msg); i++ {
			covered[i] = true
		}
	}
	// Marking every occurrence before replacing any keeps one replacement
	// from hiding, or forming, another candidate.
	for _, c := range secretCandidates(kubeconfig) {
		for start := 0; start < len(msg); {
			i := strings.Index(msg[start:], c)
			if i < 0 {
				break
			}
			i += start
			for j := i; j < i+len(c); j++ {
				covered[j] = true
			}
			start = i + 1
		}
	}
	var b strings.Builder
	for i := 0; i < len(msg); i++ {
		switch {
		case !covered[i]:
			b.WriteByte(msg[i])
		case i == 0 || !covered[i-1]:
			b.WriteString(redacted)
		}
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

var supportedLbTypes = []flomesh.LoadBalancerType{
	flomesh.LocalityLbType, flomesh.FailOverLbType, flomesh.ActiveActiveLbType,
}

// ValidateGlobalTrafficPolicy checks a GlobalTrafficPolicy on creation.
func ValidateGlobalTrafficPolicy(p *flomesh.GlobalTrafficPolicy) field.ErrorList {
	allErrs := apivalidation.ValidateObjectMeta(&p.ObjectMeta, true, ValidateGlobalTrafficPolicyName, field.NewPath("metadata"))
	allErrs = append(allErrs, validateGlobalTrafficPolicySpec(&p.Spec, field.NewPath("spec"))...)
	return allErrs
}

func validateGlobalTrafficPolicySpec(spec *flomesh.GlobalTrafficPolicySpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	targetsPath := fldPath.Child("targets")
	if len(spec.Targets) > MaxPolicyTargets {
		// Counted, not walked: each target would be looked up.
		return field.ErrorList{field.TooMany(targetsPath, len(spec.Targets), MaxPolicyTargets)}
	}

	switch spec.LbType {
	case "":
		allErrs = append(allErrs, field.Required(fldPath.Child("lbType"), "defaults to Locality"))
	case flomesh.LocalityLbType:
		if len(spec.Targets) > 0 {
			allErrs = append(allErrs, field.Forbidden(targetsPath,
				"Locality routes to the local cluster only and takes no targets; use FailOver or ActiveActive to route to other clusters"))
		}
	case flomesh.FailOverLbType:
		if len(spec.Targets) == 0 {
			allErrs = append(allErrs, field.Required(targetsPath, "FailOver needs at least one target to fail over to"))
		}
	case flomesh.ActiveActiveLbType:
		// No targets means every exporting cluster.
	default:
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("lbType"), spec.LbType, supportedLbTypes))
	}

	keys := make([]string, len(spec.Targets))
	for i, target := range spec.Targets {
		keys[i] = target.ClusterKey
		// Weights matter only under ActiveActive, but are kept under the
		// other types so that switching lbType back does not lose them.
		if target.Weight != nil && *target.Weight < 0 {
			allErrs = append(allErrs, field.Invalid(targetsPath.Index(i).Child("weight"), *target.Weight,
				"must be greater than or equal to 0"))
		}
	}
	allErrs = append(allErrs, validateClusterKeys(keys, func(i int) *field.Path {
		return targetsPath.Index(i).Child("clusterKey")
	})...)
	if g := spec.UnavailableGraceSeconds; g != nil && (*g < 0 || *g > MaxUnavailableGraceSeconds) {
		allErrs = append(allErrs, field.Invalid(fldPath.Child("unavailableGraceSeconds"), *g,
			fmt.Sprintf("must be between 0 and %d seconds", MaxUnavailableGraceSeconds)))
	}
	return allErrs
}

// ValidateGlobalTrafficPolicyUpdate checks a GlobalTrafficPolicy on update.
func ValidateGlobalTrafficPolicyUpdate(newPolicy, oldPolicy *flomesh.GlobalTrafficPolicy) field.ErrorList {
	allErrs := apivalidation.ValidateObjectMetaUpdate(&newPolicy.ObjectMeta, &oldPolicy.ObjectMeta, field.NewPath("metadata"))
	allErrs = append(allErrs, ValidateGlobalTrafficPolicy(newPolicy)...)
	return allErrs
}

// ValidateGlobalTrafficPolicyStatusUpdate checks a GlobalTrafficPolicy on
// update of its status.
func ValidateGlobalTrafficPolicyStatusUpdate(newPolicy, oldPolicy *flomesh.GlobalTrafficPolicy) field.ErrorList {
	allErrs := apivalidation.ValidateObjectMetaUpdate(&newPolicy.ObjectMeta, &oldPolicy.ObjectMeta, field.NewPath("metadata"))
	fldPath := field.NewPath("status")
	status := &newPolicy.Status
	allErrs = append(allErrs, metav1validation.ValidateConditions(status.Conditions, fldPath.Child("conditions"))...)
	targetsPath := fldPath.Child("targets")
	keys := make([]string, len(status.Targets))
	for i := range status.Targets {
		keys[i] = status.Targets[i].ClusterKey
	}
	// status.targets is a map list keyed by clusterKey: a repeated key
	// would make server-side apply of the status fail.
	allErrs = append(allErrs, validateClusterKeys(keys, func(i int) *field.Path {
		return targetsPath.Index(i).Child("clusterKey")
	})...)
	allErrs = append(allErrs, validateConsumerRoutes(status.Consumers, fldPath.Child("consumers"))...)
	return allErrs
}

// validateConsumerRoutes checks status.consumers: a map list keyed by
// cluster and port, of bounded size.
func validateConsumerRoutes(routes []flomesh.ConsumerRoute, fldPath *field.Path) field.ErrorList {
	if len(routes) > MaxConsumerRoutes {
		return field.ErrorList{field.TooMany(fldPath, len(routes), MaxConsumerRoutes)}
	}
	var allErrs field.ErrorList
	type routeKey struct {
		cluster string
		port    int32
	}
	seen := sets.New[routeKey]()
	for i, r := range routes {
		path := fldPath.Index(i)
		errs := ValidateClusterKey(r.Cluster, path.Child("cluster"))
		errs = append(errs, validatePort(r.Port, path.Child("port"))...)
		if len(errs) == 0 {
			if k := (routeKey{r.Cluster, r.Port}); seen.Has(k) {
				// A repeated key would make server-side apply of the
				// status fail.
				errs = append(errs, field.Duplicate(path, fmt.Sprintf("cluster %s, port %d", r.Cluster, r.Port)))
			} else {
				seen.Insert(k)
			}
		}
		allErrs = append(allErrs, errs...)
		if longerThan(r.Message, MaxRouteMessageLength) {
			allErrs = append(allErrs, field.TooLong(path.Child("message"), "", MaxRouteMessageLength))
		}
		tiersPath := path.Child("tiers")
		if len(r.Tiers) > MaxRouteTiers {
			allErrs = append(allErrs, field.TooMany(tiersPath, len(r.Tiers), MaxRouteTiers))
			continue
		}
		for j, tier := range r.Tiers {
			destsPath := tiersPath.Index(j).Child("destinations")
			if len(tier.Destinations) == 0 {
				allErrs = append(allErrs, field.Required(destsPath, "a tier has at least one destination"))
			}
			if len(tier.Destinations) > MaxReportedMembers {
				allErrs = append(allErrs, field.TooMany(destsPath, len(tier.Destinations), MaxReportedMembers))
				continue
			}
			keys := make([]string, len(tier.Destinations))
			for k, d := range tier.Destinations {
				keys[k] = d.Cluster
				if d.Weight < 1 {
					allErrs = append(allErrs, field.Invalid(destsPath.Index(k).Child("weight"), d.Weight, "must be greater than or equal to 1"))
				}
			}
			allErrs = append(allErrs, validateClusterKeys(keys, func(k int) *field.Path {
				return destsPath.Index(k).Child("cluster")
			})...)
		}
	}
	return allErrs
}

var supportedPathTypes = []flomesh.PathType{flomesh.PathTypeExact, flomesh.PathTypePrefix}

var supportedExportLoadBalancers = []flomesh.ExportLoadBalancer{
	flomesh.RoundRobinLoadBalancer, flomesh.HashingLoadBalancer, flomesh.LeastWorkLoadBalancer,
}

// The limits of a ServiceExport. Each is enforced twice: by the member's
// CRD, whose +kubebuilder markers on v1alpha1.ServiceExportSpec repeat
// these numbers (TestServiceExportCRDLimits checks that they agree), and by
// ValidateServiceExportSpec, which fedmesh-apiserver applies to every export
// it merges (pkg/imports), since a member may run an older CRD, or hold
// exports stored before it, and fedmesh judges whatever a member answers. They are generous for real services, and they make the
// largest valid export cheap to judge, to merge and to serve.
const (
	// MaxExportRules bounds spec.rules. A rule exposes one port of the
	// Service, which rarely has more than a handful; Gateway API allows as
	// many matches in an HTTPRoute rule.
	MaxExportRules = 64
	// MaxPathLength bounds spec.rules[].path and both ends of
	// spec.pathRewrite, in characters, as Gateway API bounds the path of
	// an HTTPRoute match. It also bounds the cost of the CRD's rule that
	// compares the paths of the rules pairwise.
	MaxPathLength = 1024
	// MaxPolicyTargets bounds a GlobalTrafficPolicy's spec.targets, which
	// every member that imports the service receives and every consumer
	// routes by: a federation larger than that lists no targets under
	// ActiveActive, which means every exporting cluster.
	MaxPolicyTargets = 100
	// MaxUnavailableGraceSeconds bounds a GlobalTrafficPolicy's
	// spec.unavailableGraceSeconds: a day. A member not Ready for longer
	// than that is not coming back on its own, and the bound keeps the
	// deadline fedmesh schedules for it a sane time.
	MaxUnavailableGraceSeconds = 86400
	// MaxReportedMembers is the size of the largest federation whose
	// routes a GlobalTrafficPolicy's status.consumers reports, and so the
	// most destinations a tier of it has. Beyond that, the routes of
	// every member would make every policy's status grow with the
	// federation, and every change of a member's readiness rewrite it.
	MaxReportedMembers = 16
	// MaxConsumerRoutes bounds status.consumers: one entry per member
	// and port of the service.
	MaxConsumerRoutes = 32
	// MaxRouteTiers bounds status.consumers[].tiers. Routing makes one
	// or two; the bound leaves room, and no more.
	MaxRouteTiers = 8
	// MaxRouteMessageLength bounds status.consumers[].message, in
	// characters.
	MaxRouteMessageLength = 4096
	// MaxTargetClusters bounds spec.targetClusters. An export meant for
	// more clusters than that leaves the list empty, which means every
	// cluster.
	MaxTargetClusters = 100
	// MaxClusterKeyLength is the length of the longest cluster key: four
	// DNS-1123 labels and the slashes between them. It bounds the items of
	// spec.targetClusters before they are parsed.
	MaxClusterKeyLength = flomesh.ClusterKeyParts*utilvalidation.DNS1123LabelMaxLength + flomesh.ClusterKeyParts - 1
	// MaxServiceAccountNameLength bounds spec.serviceAccountName, the name
	// of a ServiceAccount (a DNS-1123 subdomain) or "*".
	MaxServiceAccountNameLength = utilvalidation.DNS1123SubdomainMaxLength
)

// longerThan reports whether s has more than max characters, as a CRD's
// maxLength counts them: Unicode code points, an invalid byte counting as
// one. Only a string that could be too long is counted, so a huge one costs
// no more than one of 4*max bytes.
func longerThan(s string, max int) bool {
	switch {
	case len(s) <= max:
		return false
	case len(s) > utf8.UTFMax*max:
		return true
	}
	return utf8.RuneCountInString(s) > max
}

// ValidateServiceExport checks a ServiceExport of a member cluster. Member
// objects are read through clients that do not default, so the fields with
// defaults (loadBalancer, rules[].pathType) may be empty and mean their
// default.
func ValidateServiceExport(e *flomesh.ServiceExport) field.ErrorList {
	allErrs := apivalidation.ValidateObjectMeta(&e.ObjectMeta, true, ValidateServiceExportName, field.NewPath("metadata"))
	allErrs = append(allErrs, ValidateServiceExportSpec(&e.Spec, field.NewPath("spec"))...)
	return allErrs
}

// ValidateServiceExportSpec checks the spec of a ServiceExport. Its cost is
// bounded by the limits above, not by the size of the export: a list over
// its limit is reported as too many, as a whole, and not walked, and a
// string is measured before it is parsed. fedmesh-apiserver judges every
// export with it each time it merges the export, so a member that holds a
// huge export costs fedmesh no more than one that holds a small one; and
// field paths are built only for the errors, as nearly every export it
// judges has none.
func ValidateServiceExportSpec(spec *flomesh.ServiceExportSpec, fldPath *field.Path) field.ErrorList {
	var allErrs field.ErrorList
	if longerThan(spec.ServiceAccountName, MaxServiceAccountNameLength) {
		allErrs = append(allErrs, field.TooLongCharacters(fldPath.Child("serviceAccountName"), spec.ServiceAccountName, MaxServiceAccountNameLength))
	}
	allErrs = append(allErrs, validateExportRules(spec.Rules, fldPath)...)
	if spec.LoadBalancer != "" && !slices.Contains(supportedExportLoadBalancers, spec.LoadBalancer) {
		allErrs = append(allErrs, field.NotSupported(fldPath.Child("loadBalancer"), spec.LoadBalancer, supportedExportLoadBalancers))
	}
	if r := spec.PathRewrite; r != nil {
		if r.From == "" {
			allErrs = append(allErrs, field.Required(fldPath.Child("pathRewrite", "from"), "the path prefix to rewrite"))
		}
		if longerThan(r.From, MaxPathLength) {
			allErrs = append(allErrs, field.TooLongCharacters(fldPath.Child("pathRewrite", "from"), r.From, MaxPathLength))
		}
		if longerThan(r.To, MaxPathLength) {
			allErrs = append(allErrs, field.TooLongCharacters(fldPath.Child("pathRewrite", "to"), r.To, MaxPathLength))
		}
	}
	if len(spec.TargetClusters) > 0 {
		allErrs = append(allErrs, validateTargetClusters(spec.TargetClusters, fldPath.Child("targetClusters"))...)
	}
	return allErrs
}

// validateExportRules checks the rules of the export whose spec is at
// fldPath. Every rule needs a path: the gateway would serve a rule without
// one at "/", which is every path of the gateway. A port is exposed at one
// path only, or a consumer would have two endpoints in one cluster for it
// and no way to choose; the same port at the same path twice is merely
// redundant.
func validateExportRules(rules []flomesh.ServiceExportRule, fldPath *field.Path) field.ErrorList {
	if len(rules) > MaxExportRules {
		return field.ErrorList{field.TooMany(fldPath.Child("rules"), len(rules), MaxExportRules)}
	}
	var allErrs field.ErrorList
	at := func(i int, name string) *field.Path { return fldPath.Child("rules").Index(i).Child(name) }
	// firstRule is, by port number, the first rule that exposes it.
	firstRule := map[int32]int{}
	for i := range rules {
		rule := &rules[i]
		if msgs := utilvalidation.IsValidPortNum(int(rule.PortNumber)); len(msgs) > 0 {
			allErrs = append(allErrs, field.Invalid(at(i, "portNumber"), rule.PortNumber, strings.Join(msgs, "; ")))
		}
		switch {
		case rule.Path == "":
			allErrs = append(allErrs, field.Required(at(i, "path"),
				"the path at which the cluster's gateway serves the port; without one the rule would take every path"))
		case longerThan(rule.Path, MaxPathLength):
			allErrs = append(allErrs, field.TooLongCharacters(at(i, "path"), rule.Path, MaxPathLength))
		case !strings.HasPrefix(rule.Path, "/"):
			allErrs = append(allErrs, field.Invalid(at(i, "path"), rule.Path, "must be an absolute path (start with \"/\")"))
		default:
			if msg := ingressPathProblem(rule.Path); msg != "" {
				allErrs = append(allErrs, field.Invalid(at(i, "path"), rule.Path, msg))
			}
		}
		if rule.PathType != "" && !slices.Contains(supportedPathTypes, rule.PathType) {
			allErrs = append(allErrs, field.NotSupported(at(i, "pathType"), rule.PathType, supportedPathTypes))
		}
		j, seen := firstRule[rule.PortNumber]
		switch {
		case !seen:
			firstRule[rule.PortNumber] = i
		case rules[j].Path != rule.Path:
			allErrs = append(allErrs, field.Invalid(at(i, "path"), rule.Path,
				fmt.Sprintf("port %d is exposed at another path by rules[%d]; a port is exposed at one path only", rule.PortNumber, j)))
		}
	}
	return allErrs
}

// Sequences and suffixes that Kubernetes refuses in the path of an Ingress
// of pathType Exact or Prefix (k8s.io/kubernetes networking validation):
// they would let a request's path escape the prefix it matched.
var (
	invalidPathSequences = []string{"//", "/./", "/../", "%2f", "%2F"}
	invalidPathSuffixes  = []string{"/..", "/."}
)

// ingressPathProblem says why the syncer's Ingress could not carry path,
// or returns "": an export the gateway cannot serve is refused up front
// rather than failing in the member at every sync.
func ingressPathProblem(path string) string {
	for _, seq := range invalidPathSequences {
		if strings.Contains(path, seq) {
			return fmt.Sprintf("must not contain %q", seq)
		}
	}
	for _, suffix := range invalidPathSuffixes {
		if strings.HasSuffix(path, suffix) {
			return fmt.Sprintf("must not end with %q", suffix)
		}
	}
	return ""
}

// validateTargetClusters checks the cluster keys an export is limited to.
func validateTargetClusters(keys []string, fldPath *field.Path) field.ErrorList {
	if len(keys) > MaxTargetClusters {
		return field.ErrorList{field.TooMany(fldPath, len(keys), MaxTargetClusters)}
	}
	var allErrs field.ErrorList
	for i, key := range keys {
		if longerThan(key, MaxClusterKeyLength) {
			allErrs = append(allErrs, field.TooLongCharacters(fldPath.Index(i), key, MaxClusterKeyLength))
		}
	}
	if len(allErrs) > 0 {
		// A key that long is no key: parsing it would only say so again.
		return allErrs
	}
	return validateClusterKeys(keys, fldPath.Index)
}
