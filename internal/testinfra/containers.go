package testinfra

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/testcontainers/testcontainers-go"
	"github.com/testcontainers/testcontainers-go/wait"
)

// The container fallback runs only when a Docker daemon answers; containers
// live for the test process and are removed by testcontainers' reaper.

const containerStartTimeout = 2 * time.Minute

func dockerAvailable() error {
	if host := os.Getenv("DOCKER_HOST"); host != "" {
		return nil // let testcontainers try the configured daemon
	}
	conn, err := net.DialTimeout("unix", "/var/run/docker.sock", time.Second)
	if err != nil {
		return errors.New("no Docker daemon (no DOCKER_HOST, /var/run/docker.sock not answering)")
	}
	_ = conn.Close()
	return nil
}

func startContainer(image, port string, env map[string]string, waitFor wait.Strategy) (host string, mapped string, err error) {
	if err := dockerAvailable(); err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), containerStartTimeout)
	defer cancel()
	c, err := testcontainers.GenericContainer(ctx, testcontainers.GenericContainerRequest{
		ContainerRequest: testcontainers.ContainerRequest{
			Image:        image,
			ExposedPorts: []string{port},
			Env:          env,
			WaitingFor:   waitFor,
		},
		Started: true,
	})
	if err != nil {
		return "", "", fmt.Errorf("start %s: %w", image, err)
	}
	host, err = c.Host(ctx)
	if err != nil {
		return "", "", err
	}
	p, err := c.MappedPort(ctx, port)
	if err != nil {
		return "", "", err
	}
	return host, p.Port(), nil
}

func startPostgresContainer() (string, error) {
	host, port, err := startContainer("postgres:15-alpine", "5432/tcp",
		map[string]string{"POSTGRES_HOST_AUTH_METHOD": "trust", "POSTGRES_DB": "test"},
		wait.ForLog("database system is ready to accept connections").WithOccurrence(2).WithStartupTimeout(containerStartTimeout))
	if err != nil {
		return "", err
	}
	return "postgres://postgres@" + host + ":" + strings.TrimSpace(port) + "/test?sslmode=disable", nil
}

func startRedisContainer() (string, error) {
	host, port, err := startContainer("redis:7-alpine", "6379/tcp", nil,
		wait.ForLog("Ready to accept connections").WithStartupTimeout(containerStartTimeout))
	if err != nil {
		return "", err
	}
	return "redis://" + host + ":" + port + "/0", nil
}
