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
// Package table turns objects into the server-side tables kubectl prints.
package table

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
)

// RowFunc returns the cells of one object, after its name.
type RowFunc func(obj runtime.Object) ([]interface{}, error)

// Convertor is a rest.TableConvertor whose first column is the name and
// last is the age, with the columns of Columns in between.
type Convertor struct {
	Columns []metav1.TableColumnDefinition
	Row     RowFunc
}

var objectMetaDescriptions = metav1.ObjectMeta{}.SwaggerDoc()

// ConvertToTable implements rest.TableConvertor.
func (c Convertor) ConvertToTable(ctx context.Context, object runtime.Object, tableOptions runtime.Object) (*metav1.Table, error) {
	table := &metav1.Table{}
	add := func(obj runtime.Object) error {
		m, err := meta.Accessor(obj)
		if err != nil {
			return err
		}
		cells, err := c.Row(obj)
		if err != nil {
			return err
		}
		row := metav1.TableRow{Object: runtime.RawExtension{Object: obj}}
		row.Cells = append(row.Cells, m.GetName())
		row.Cells = append(row.Cells, cells...)
		row.Cells = append(row.Cells, Age(m.GetCreationTimestamp()))
		table.Rows = append(table.Rows, row)
		return nil
	}
	if meta.IsListType(object) {
		if err := meta.EachListItem(object, add); err != nil {
			return nil, err
		}
		if l, err := meta.ListAccessor(object); err == nil {
			table.ResourceVersion = l.GetResourceVersion()
			table.Continue = l.GetContinue()
			table.RemainingItemCount = l.GetRemainingItemCount()
		}
	} else {
		if err := add(object); err != nil {
			return nil, err
		}
		if m, err := meta.Accessor(object); err == nil {
			table.ResourceVersion = m.GetResourceVersion()
		}
	}
	if opt, ok := tableOptions.(*metav1.TableOptions); !ok || !opt.NoHeaders {
		table.ColumnDefinitions = append(table.ColumnDefinitions,
			metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name", Description: objectMetaDescriptions["name"]})
		table.ColumnDefinitions = append(table.ColumnDefinitions, c.Columns...)
		table.ColumnDefinitions = append(table.ColumnDefinitions,
			metav1.TableColumnDefinition{Name: "Age", Type: "string", Description: objectMetaDescriptions["creationTimestamp"]})
	}
	return table, nil
}

// Age formats the time since t the way kubectl does ("5m", "3d").
func Age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

// ConditionStatus returns the status of the condition of type t, or
// "Unknown" when there is none.
func ConditionStatus(conditions []metav1.Condition, t string) string {
	if c := meta.FindStatusCondition(conditions, t); c != nil {
		return string(c.Status)
	}
	return string(metav1.ConditionUnknown)
}

// Unexpected is the error for an object of a type the convertor does not know.
func Unexpected(obj runtime.Object) error {
	return fmt.Errorf("unexpected object of type %T", obj)
}
