// Ballast's replacement for k8s.io/apiserver/pkg/storage/etcd3/testserver/test_server.go, put in
// its place with `go test -overlay` (test/peer/k8s-storage/run): Kubernetes' own storage tests then
// run unchanged against a store process started fresh for each test, as RunEtcd starts a fresh
// embedded etcd. The process is whatever STORAGE_PEER_SERVER names (a script that starts etcd or
// `ballast store` on the given URLs and data directory), so both stores run the same tests
// through the same harness in the same run.
package testserver

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/kubernetes"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	storagetesting "k8s.io/apiserver/pkg/storage/testing"
)

// freePort asks the kernel for a port that is free now.
func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// NewTestConfig returns the settings a test may adjust before RunEtcd: free loopback ports and a
// data directory removed when the test ends. Of the server settings, RunEtcd honours
// WatchProgressNotifyInterval (the only one the tests change).
func NewTestConfig(t testing.TB) *embed.Config {
	cfg := embed.NewConfig()
	clientURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))}
	peerURL := url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.Dir = t.TempDir()
	return cfg
}

// RunEtcd starts the store under test and returns a client to it, with the recorders the tests
// read, as the original does.
func RunEtcd(t testing.TB, cfg *embed.Config) *kubernetes.Client {
	t.Helper()
	if cfg == nil {
		cfg = NewTestConfig(t)
	}
	server := os.Getenv("STORAGE_PEER_SERVER")
	if server == "" {
		t.Fatal("STORAGE_PEER_SERVER is not set: it names the script that starts the store under test (test/peer/k8s-storage/server)")
	}
	// A port freePort found may be taken by another process before the store binds it (other
	// suites run beside this one): a store that exits before it listens is started again on new
	// ports, up to three times.
	var clientURL string
	var exited chan struct{}
	for attempt := 1; ; attempt++ {
		clientURL = cfg.ListenClientUrls[0].String()
		var up bool
		exited, up = startStore(t, server, cfg)
		if up {
			break
		}
		if attempt == 3 {
			t.Fatalf("%s exited before listening on %s, three times (its output is above)", server, clientURL)
		}
		t.Logf("%s exited before listening on %s (a port taken meanwhile?): starting it again on new ports", server, clientURL)
		fresh := NewTestConfig(t)
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = fresh.ListenClientUrls, fresh.AdvertiseClientUrls
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = fresh.ListenPeerUrls, fresh.AdvertisePeerUrls
		cfg.Dir = fresh.Dir
	}

	client, err := kubernetes.New(clientv3.Config{
		Endpoints:   []string{clientURL},
		DialTimeout: 30 * time.Second,
		DialOptions: []grpc.DialOption{grpc.WithBlock()},
		Logger:      zaptest.NewLogger(t, zaptest.Level(zapcore.ErrorLevel)).Named("etcd-client"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	// Ready when a linearizable read succeeds (a leader is elected and has applied its first entry).
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = client.Client.Get(ctx, "health")
		cancel()
		if err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("%s exited before answering: %v", server, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal(fmt.Errorf("the store under test did not answer within 60 s: %w", err))
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-exited:
		// Something else answered on its port: the test would run against the wrong server.
		t.Fatalf("%s exited, yet %s answered: another process holds that port", server, clientURL)
	default:
	}
	client.KV = storagetesting.NewKVRecorder(client.KV)
	client.Kubernetes = storagetesting.NewKubernetesRecorder(client.Kubernetes)
	return client
}

// startStore starts the store under test on cfg's URLs and waits until its client port accepts
// connections (true) or the process exits (false). The process is killed when the test ends.
func startStore(t testing.TB, server string, cfg *embed.Config) (chan struct{}, bool) {
	clientURL, peerURL := cfg.ListenClientUrls[0].String(), cfg.ListenPeerUrls[0].String()
	cmd := exec.Command(server)
	cmd.Env = append(os.Environ(), "DATA_DIR="+cfg.Dir, "CLIENT_URL="+clientURL, "PEER_URL="+peerURL,
		"PROGRESS_NOTIFY_INTERVAL_MS="+strconv.FormatInt(cfg.WatchProgressNotifyInterval.Milliseconds(), 10))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	})
	host := cfg.ListenClientUrls[0].Host
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return exited, false
		default:
		}
		if c, err := net.DialTimeout("tcp", host, 200*time.Millisecond); err == nil {
			_ = c.Close()
			return exited, true
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Not listening after a minute but running: let the readiness check below report it.
	return exited, true
}
