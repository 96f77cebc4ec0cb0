// Package config binds a component's one config struct to command-line flags and logs it at start.
//
// Each component keeps every setting in one struct; each field carries a `flag:"name"` tag and a
// `help:"one line"` tag, and the component's Default() function holds the defaults. Bind turns the
// struct into flags (a flag's default is the field's current value), so the defaults, the docs and
// the flags can never drift apart, and Log prints every effective setting at start.
package config

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"time"
)

// Bind registers one flag per tagged field of the struct cfg points to, prefixed by prefix
// (e.g. "director." or ""). Nested structs without a flag tag are walked with their own `prefix` tag.
func Bind(fs *flag.FlagSet, prefix string, cfg any) error {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		return fmt.Errorf("config.Bind: want a pointer to a struct, got %T", cfg)
	}
	return bindStruct(fs, prefix, v.Elem())
}

var durationType = reflect.TypeFor[time.Duration]()

func bindStruct(fs *flag.FlagSet, prefix string, v reflect.Value) error {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, ok := f.Tag.Lookup("flag")
		fv := v.Field(i)
		if !ok {
			if fv.Kind() == reflect.Struct && fv.Type() != durationType {
				if err := bindStruct(fs, prefix+f.Tag.Get("prefix"), fv); err != nil {
					return err
				}
			}
			continue
		}
		name = prefix + name
		help := f.Tag.Get("help")
		if help == "" {
			return fmt.Errorf("config: field %s (flag %q) has no help tag", f.Name, name)
		}
		ptr := fv.Addr().Interface()
		switch p := ptr.(type) {
		case *string:
			fs.StringVar(p, name, *p, help)
		case *bool:
			fs.BoolVar(p, name, *p, help)
		case *int:
			fs.IntVar(p, name, *p, help)
		case *int64:
			fs.Int64Var(p, name, *p, help)
		case *uint:
			fs.UintVar(p, name, *p, help)
		case *uint64:
			fs.Uint64Var(p, name, *p, help)
		case *float64:
			fs.Float64Var(p, name, *p, help)
		case *time.Duration:
			fs.DurationVar(p, name, *p, help)
		case *[]string:
			fs.Var((*stringList)(p), name, help+" (comma-separated)")
		case flag.Value:
			fs.Var(p, name, help)
		default:
			return fmt.Errorf("config: field %s (flag %q) has unsupported type %s", f.Name, name, f.Type)
		}
	}
	return nil
}

type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = nil
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			*s = append(*s, part)
		}
	}
	return nil
}

// Log writes every tagged setting of cfg as one structured record, so a log shows exactly what a
// component ran with. The name goes under "config_of", not "component": loggers often carry a
// component attribute already, and a record must not hold the same key twice. Fields tagged `secret:"true"` are logged as "<set>" or "<unset>".
func Log(ctx context.Context, log *slog.Logger, component string, cfg any) {
	v := reflect.ValueOf(cfg)
	if v.Kind() == reflect.Pointer {
		v = v.Elem()
	}
	var attrs []slog.Attr
	collect(&attrs, "", v)
	log.LogAttrs(ctx, slog.LevelInfo, "config", append([]slog.Attr{slog.String("config_of", component)}, attrs...)...)
}

func collect(attrs *[]slog.Attr, prefix string, v reflect.Value) {
	if v.Kind() != reflect.Struct {
		return
	}
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fv := v.Field(i)
		name, ok := f.Tag.Lookup("flag")
		if !ok {
			if fv.Kind() == reflect.Struct && fv.Type() != durationType {
				collect(attrs, prefix+f.Tag.Get("prefix"), fv)
			}
			continue
		}
		val := fv.Interface()
		if f.Tag.Get("secret") == "true" {
			if fv.IsZero() {
				val = "<unset>"
			} else {
				val = "<set>"
			}
		}
		if d, ok := val.(time.Duration); ok {
			val = d.String()
		}
		*attrs = append(*attrs, slog.Any(prefix+name, val))
	}
}
