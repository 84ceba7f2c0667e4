package testinfra

import "errors"

// errNoDocker is what the container fallback reports when it cannot run.
var errNoDocker = errors.New("no Docker daemon (testcontainers fallback not available)")

func startPostgresContainer() (string, error) { return "", errNoDocker }

func startRedisContainer() (string, error) { return "", errNoDocker }
