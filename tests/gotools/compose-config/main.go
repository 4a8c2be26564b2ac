// compose-config: Docker Compose's own validation of a Compose file, without Docker.
//
//	compose-config DIR     # DIR holds compose.yaml and .env
//
// Loads DIR/compose.yaml with compose-go, the library `docker compose config` is built on:
// the Compose specification's JSON schema, then the semantic checks (every service named by
// network_mode, depends_on, a secret or a volume exists; ports, durations and sizes parse),
// with variables interpolated from DIR/.env as `docker compose` would. Prints the resolved
// project as YAML (what `docker compose config` prints) and exits 1 with compose-go's error
// when the file is not a valid Compose project.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: compose-config DIR")
		os.Exit(2)
	}
	dir := os.Args[1]
	options, err := cli.NewProjectOptions(
		[]string{filepath.Join(dir, "compose.yaml")},
		cli.WithWorkingDirectory(dir),
		cli.WithEnvFiles(filepath.Join(dir, ".env")),
		cli.WithDotEnv,
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "compose-config:", err)
		os.Exit(1)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "compose-config:", err)
		os.Exit(1)
	}
	out, err := project.MarshalYAML()
	if err != nil {
		fmt.Fprintln(os.Stderr, "compose-config:", err)
		os.Exit(1)
	}
	os.Stdout.Write(out)
}
