// loadgen: a closed-loop load generator over the etcd v3 API using etcd's own Go client
// (clientv3), so etcd and ballast store are driven by the same efficient client.
//
//	loadgen -endpoints a,b,c -op put|range -clients 16 -conns 8 -duration 5s -warmup 1s [-user name:password]
//
// Prints one JSON object: ops/s, p50 and p99 in milliseconds, errors.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

type result struct {
	Op        string  `json:"op"`
	Clients   int     `json:"clients"`
	OpsPerSec float64 `json:"opsPerSec"`
	P50ms     float64 `json:"p50ms"`
	P99ms     float64 `json:"p99ms"`
	Errors    int64   `json:"errors"`
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated client endpoints")
	op := flag.String("op", "put", "put or range (linearizable)")
	clients := flag.Int("clients", 1, "concurrent closed-loop clients")
	conns := flag.Int("conns", 0, "gRPC connections (default min(clients, 16))")
	duration := flag.Duration("duration", 5*time.Second, "measurement time")
	warmup := flag.Duration("warmup", time.Second, "unmeasured time before")
	valueSize := flag.Int("value-size", 256, "bytes per value")
	keys := flag.Int("keys", 1000, "distinct keys")
	watchers := flag.Int("watchers", 1000, "watch mode: watchers on the prefix")
	rate := flag.Int("rate", 100, "watch mode: writes per second by the one writer")
	user := flag.String("user", "", "name:password: authenticate as this user (auth on)")
	flag.Parse()
	username, password, _ := strings.Cut(*user, ":")

	eps := strings.Split(*endpoints, ",")
	if *conns == 0 {
		*conns = *clients
		if *conns > 16 {
			*conns = 16
		}
	}
	cs := make([]*clientv3.Client, *conns)
	for i := range cs {
		// Each connection is pinned to one endpoint, spread round-robin: the same for both systems.
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{eps[i%len(eps)]}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(), Username: username, Password: password})
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadgen:", err)
			os.Exit(2)
		}
		cs[i] = c
	}
	if *op == "watch" {
		watchBench(cs, *watchers, *rate, *duration)
		return
	}
	value := strings.Repeat("v", *valueSize)
	if *op == "range" {
		for k := 0; k < *keys; k++ {
			if _, err := cs[0].Put(context.Background(), fmt.Sprintf("bench/%d", k), value); err != nil {
				fmt.Fprintln(os.Stderr, "loadgen: preload:", err)
				os.Exit(2)
			}
		}
	}
	var measuring, stop atomic.Bool
	var errors atomic.Int64
	lat := make([][]time.Duration, *clients)
	var wg sync.WaitGroup
	for w := 0; w < *clients; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := cs[w%len(cs)]
			for n := 0; !stop.Load(); n++ {
				key := fmt.Sprintf("bench/%d", (w*7919+n)%*keys)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				t := time.Now()
				var err error
				if *op == "put" {
					_, err = c.Put(ctx, key, value)
				} else {
					_, err = c.Get(ctx, key)
				}
				d := time.Since(t)
				cancel()
				if measuring.Load() {
					if err != nil {
						errors.Add(1)
					} else {
						lat[w] = append(lat[w], d)
					}
				}
			}
		}(w)
	}
	time.Sleep(*warmup)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(*duration)
	measuring.Store(false)
	elapsed := time.Since(start)
	stop.Store(true)
	wg.Wait()
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	pct := func(p float64) float64 {
		if len(all) == 0 {
			return 0
		}
		i := int(p * float64(len(all)))
		if i >= len(all) {
			i = len(all) - 1
		}
		return float64(all[i].Microseconds()) / 1000
	}
	name := *op
	if name == "range" {
		name = "range (linearizable)"
	}
	out, _ := json.Marshal(result{Op: name, Clients: *clients, OpsPerSec: float64(len(all)) / elapsed.Seconds(), P50ms: pct(0.5), P99ms: pct(0.99), Errors: errors.Load()})
	fmt.Println(string(out))
	for _, c := range cs {
		c.Close()
	}
}

type watchResult struct {
	Watchers      int     `json:"watchers"`
	Writes        int     `json:"writes"`
	Expected      int     `json:"eventsExpected"`
	Received      int     `json:"eventsReceived"`
	OutOfOrder    int     `json:"outOfOrder"`
	Gaps          int     `json:"gaps"`
	P50ms         float64 `json:"p50ms"`
	P99ms         float64 `json:"p99ms"`
	WatchersExact int     `json:"watchersWithEveryRevision"`
}

// watchBench: one writer puts the send time (UnixNano) under one key of a prefix at a fixed
// rate; every watcher of the prefix must see every write's revision, in order, exactly once.
// Delivery latency is receive time minus send time (same machine, same clock).
func watchBench(cs []*clientv3.Client, watchers, rate int, duration time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type seen struct {
		revs []int64
		lat  []time.Duration
	}
	results := make([]*seen, watchers)
	var ready sync.WaitGroup
	var mu sync.Mutex
	for w := 0; w < watchers; w++ {
		results[w] = &seen{}
		ready.Add(1)
		go func(w int) {
			c := cs[w%len(cs)]
			wch := c.Watch(clientv3.WithRequireLeader(ctx), "wbench/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
			created := false
			for resp := range wch {
				if resp.Created && !created {
					created = true
					ready.Done()
					continue
				}
				now := time.Now()
				mu.Lock()
				for _, ev := range resp.Events {
					var sent int64
					fmt.Sscan(string(ev.Kv.Value), &sent)
					results[w].revs = append(results[w].revs, ev.Kv.ModRevision)
					results[w].lat = append(results[w].lat, now.Sub(time.Unix(0, sent)))
				}
				mu.Unlock()
			}
		}(w)
	}
	ready.Wait()
	writes := 0
	ticker := time.NewTicker(time.Second / time.Duration(rate))
	end := time.Now().Add(duration)
	var firstRev, lastRev int64
	for time.Now().Before(end) {
		<-ticker.C
		resp, err := cs[0].Put(context.Background(), "wbench/k", fmt.Sprint(time.Now().UnixNano()))
		if err != nil {
			continue
		}
		if firstRev == 0 {
			firstRev = resp.Header.Revision
		}
		lastRev = resp.Header.Revision
		writes++
	}
	ticker.Stop()
	time.Sleep(2 * time.Second) // let the last events arrive
	cancel()
	mu.Lock()
	defer mu.Unlock()
	res := watchResult{Watchers: watchers, Writes: writes, Expected: writes * watchers}
	var all []time.Duration
	for _, r := range results {
		exact := len(r.revs) == writes
		for i, rev := range r.revs {
			if i > 0 && rev <= r.revs[i-1] {
				res.OutOfOrder++
				exact = false
			} else if i > 0 && rev != r.revs[i-1]+1 {
				res.Gaps++
				exact = false
			}
		}
		if len(r.revs) > 0 && (r.revs[0] != firstRev || r.revs[len(r.revs)-1] != lastRev) {
			exact = false
		}
		if exact {
			res.WatchersExact++
		}
		res.Received += len(r.revs)
		all = append(all, r.lat...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	if len(all) > 0 {
		res.P50ms = float64(all[len(all)/2].Microseconds()) / 1000
		res.P99ms = float64(all[int(float64(len(all))*0.99)].Microseconds()) / 1000
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}
