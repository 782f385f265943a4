// Package flagenv gives both binaries one way to read their settings: a
// flag on the command line, else its environment variable (the prefix and
// the flag's name, upper case, dashes as underscores: --api-listen is
// SCALER_API_LISTEN), read through viper, else the default; and a --help
// that lists the flags by concern, each with its variable.
package flagenv

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
)

// EnvName is the environment variable of flag name under prefix.
func EnvName(prefix, name string) string {
	return prefix + "_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// Apply sets each flag of fs that the command line left unset from its
// environment variable, if that is set. A value the flag refuses is an
// error naming the variable.
func Apply(fs *pflag.FlagSet, prefix string) error {
	v := viper.New()
	v.SetEnvPrefix(prefix)
	v.SetEnvKeyReplacer(strings.NewReplacer("-", "_"))
	v.AutomaticEnv()
	v.AllowEmptyEnv(true) // SCALER_X="" sets the flag to "", as the command line would
	if err := v.BindPFlags(fs); err != nil {
		return fmt.Errorf("flags: %w", err)
	}
	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Changed || len(f.Annotations[noEnvKey]) > 0 || !v.IsSet(f.Name) {
			return
		}
		val := v.GetString(f.Name)
		if err := fs.Set(f.Name, val); err != nil {
			errs = append(errs, fmt.Errorf("environment %s=%q: %w", EnvName(prefix, f.Name), val, err))
		}
	})
	return errors.Join(errs...)
}

const (
	groupKey = "flagenv-group"
	noEnvKey = "flagenv-no-env"
)

// NoEnv keeps the named flags from their environment variables: flags
// whose being given is itself the request (scalerctl org set's changes),
// which a variable left in a shell must not join.
func NoEnv(fs *pflag.FlagSet, names ...string) {
	for _, n := range names {
		if fs.Lookup(n) == nil {
			panic("flagenv: no flag " + n)
		}
		_ = fs.SetAnnotation(n, noEnvKey, []string{"true"})
	}
}

// Group files the named flags under heading, for Usage.
func Group(fs *pflag.FlagSet, heading string, names ...string) {
	for _, n := range names {
		if fs.Lookup(n) == nil {
			panic("flagenv: no flag " + n) // a typo in the grouping, caught by any test that runs --help
		}
		_ = fs.SetAnnotation(n, groupKey, []string{heading})
	}
}

// Usage writes fs's flags under their headings, in headings' order (flags
// in no group last, under "Other"), each with its environment variable
// and default.
func Usage(w io.Writer, fs *pflag.FlagSet, prefix string, headings []string) {
	byGroup := map[string][]*pflag.Flag{}
	fs.VisitAll(func(f *pflag.Flag) {
		g := "Other"
		if a := f.Annotations[groupKey]; len(a) > 0 {
			g = a[0]
		}
		byGroup[g] = append(byGroup[g], f)
	})
	for _, h := range append(headings, "Other") {
		flags := byGroup[h]
		if len(flags) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s:\n", h)
		for _, f := range flags {
			def := ""
			if f.DefValue != "" && f.DefValue != "[]" {
				def = fmt.Sprintf(", default %s", f.DefValue)
			}
			fmt.Fprintf(w, "  --%s (env %s%s)\n      %s\n", f.Name, EnvName(prefix, f.Name), def, f.Usage)
		}
	}
}
