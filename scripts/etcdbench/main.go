// etcdbench: a small load generator for etcd v3 over gRPC (clientv3), used by
// scripts/bench-cluster.ts to measure etcd next to kv on the same machine in the same run.
//
// It builds offline in GOPATH mode against the clientv3 sources that Debian ships in
// golang-etcd-server-dev (scripts/bench-cluster.ts does this):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o etcdbench scripts/etcdbench/main.go
//
// Modes:
//
//	-op put     puts of random keys from -key-space with -val-size byte values (-sequential:
//	            request i writes key i mod -key-space, to fill the key space)
//	-op range   single-key ranges of random keys (linearizable unless -serializable)
//	-op leader  prints the client URL of the member that leads, of those in -endpoints
//
// The result of put/range is one JSON object on stdout: requests, errors, seconds, ops/s and
// latency percentiles in milliseconds. -clients goroutines share -conns gRPC connections; with
// several endpoints, connection i goes to endpoint i mod len(endpoints).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/clientv3"
)

type result struct {
	Op        string  `json:"op"`
	Endpoints string  `json:"endpoints"`
	Clients   int     `json:"clients"`
	Conns     int     `json:"conns"`
	Requests  int64   `json:"requests"`
	Errors    int64   `json:"errors"`
	FirstErr  string  `json:"firstError,omitempty"`
	Seconds   float64 `json:"seconds"`
	Ops       float64 `json:"ops"`
	AvgMs     float64 `json:"avgMs"`
	P50Ms     float64 `json:"p50Ms"`
	P90Ms     float64 `json:"p90Ms"`
	P99Ms     float64 `json:"p99Ms"`
	P999Ms    float64 `json:"p999Ms"`
	MaxMs     float64 `json:"maxMs"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "etcdbench: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	endpoints := flag.String("endpoints", "127.0.0.1:2379", "comma-separated client endpoints (host:port or URL)")
	op := flag.String("op", "put", "put, range or leader")
	clients := flag.Int("clients", 50, "concurrent requests in flight (goroutines)")
	conns := flag.Int("conns", 10, "gRPC connections shared by the clients")
	total := flag.Int64("total", 100000, "requests to send")
	keySize := flag.Int("key-size", 16, "key length in bytes (key:0000…N)")
	valSize := flag.Int("val-size", 16, "value length in bytes for puts")
	keySpace := flag.Int("key-space", 100000, "keys are drawn uniformly from this many")
	serializable := flag.Bool("serializable", false, "ranges read the member's local state (no ReadIndex)")
	sequential := flag.Bool("sequential", false, "request i uses key i mod -key-space instead of a random key (to fill the key space)")
	seed := flag.Int64("seed", 1, "random seed")
	reqTimeout := flag.Duration("request-timeout", 10*time.Second, "timeout of one request")
	deadline := flag.Duration("deadline", 300*time.Second, "stop sending after this long, whatever -total says")
	flag.Parse()

	eps := strings.Split(*endpoints, ",")
	for i, e := range eps {
		eps[i] = strings.TrimSpace(e)
		if eps[i] == "" {
			fail("empty endpoint in %q", *endpoints)
		}
	}
	if *op == "leader" {
		leader(eps)
		return
	}
	if *op != "put" && *op != "range" {
		fail("-op must be put, range or leader, got %q", *op)
	}
	if *clients < 1 || *conns < 1 || *total < 1 || *keySpace < 1 || *valSize < 0 {
		fail("-clients, -conns, -total and -key-space must be positive")
	}
	digits := *keySize - 4
	if digits < 1 || float64(*keySpace) > pow10(digits) {
		fail("-key-size %d cannot hold %d distinct keys as key:NNN", *keySize, *keySpace)
	}
	if *conns > *clients {
		*conns = *clients
	}

	cs := make([]*clientv3.Client, *conns)
	for i := range cs {
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{eps[i%len(eps)]}, DialTimeout: 5 * time.Second})
		if err != nil {
			fail("connect to %s: %v", eps[i%len(eps)], err)
		}
		cs[i] = c
	}
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()

	value := strings.Repeat("v", *valSize)
	var issued, errs int64
	var firstErr atomic.Value
	lat := make([][]time.Duration, *clients)
	var wg sync.WaitGroup
	start := time.Now()
	stopAt := start.Add(*deadline)
	for g := 0; g < *clients; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			c := cs[g%len(cs)]
			rng := rand.New(rand.NewSource(*seed*1000003 + int64(g)))
			mine := make([]time.Duration, 0, *total/int64(*clients)+1)
			var getOpts []clientv3.OpOption
			if *serializable {
				getOpts = append(getOpts, clientv3.WithSerializable())
			}
			for {
				n := atomic.AddInt64(&issued, 1)
				if n > *total || !time.Now().Before(stopAt) {
					break
				}
				k := rng.Intn(*keySpace)
				if *sequential {
					k = int((n - 1) % int64(*keySpace))
				}
				key := fmt.Sprintf("key:%0*d", digits, k)
				ctx, cancel := context.WithTimeout(context.Background(), *reqTimeout)
				t0 := time.Now()
				var err error
				if *op == "put" {
					_, err = c.Put(ctx, key, value)
				} else {
					_, err = c.Get(ctx, key, getOpts...)
				}
				d := time.Since(t0)
				cancel()
				if err != nil {
					if atomic.AddInt64(&errs, 1) == 1 {
						firstErr.Store(err.Error())
					}
					continue
				}
				mine = append(mine, d)
			}
			lat[g] = mine
		}(g)
	}
	wg.Wait()
	elapsed := time.Since(start)

	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r := result{
		Op: *op, Endpoints: strings.Join(eps, ","), Clients: *clients, Conns: len(cs),
		Requests: int64(len(all)), Errors: errs, Seconds: elapsed.Seconds(),
	}
	if s, ok := firstErr.Load().(string); ok {
		r.FirstErr = s
	}
	if *serializable {
		r.Op += "-serializable"
	}
	if len(all) > 0 {
		var sum time.Duration
		for _, d := range all {
			sum += d
		}
		ms := func(d time.Duration) float64 { return float64(d) / 1e6 }
		pct := func(p float64) float64 {
			i := int(p*float64(len(all))+0.5) - 1
			if i < 0 {
				i = 0
			}
			if i >= len(all) {
				i = len(all) - 1
			}
			return ms(all[i])
		}
		r.Ops = float64(len(all)) / elapsed.Seconds()
		r.AvgMs = ms(sum) / float64(len(all))
		r.P50Ms, r.P90Ms, r.P99Ms, r.P999Ms = pct(0.50), pct(0.90), pct(0.99), pct(0.999)
		r.MaxMs = ms(all[len(all)-1])
	}
	out, _ := json.Marshal(r)
	fmt.Println(string(out))
	if r.Requests == 0 {
		os.Exit(1)
	}
}

func pow10(n int) float64 {
	x := 1.0
	for i := 0; i < n; i++ {
		x *= 10
	}
	return x
}

// leader prints the endpoint (as given) of the member that the others name as leader.
func leader(eps []string) {
	c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second})
	if err != nil {
		fail("connect: %v", err)
	}
	defer c.Close()
	ids := map[uint64]string{}
	var lead uint64
	for _, e := range eps {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.Status(ctx, e)
		cancel()
		if err != nil {
			fail("status of %s: %v", e, err)
		}
		ids[st.Header.MemberId] = e
		if st.Leader != 0 {
			lead = st.Leader
		}
	}
	e, ok := ids[lead]
	if lead == 0 || !ok {
		fail("no leader among %v (leader id %x)", eps, lead)
	}
	fmt.Println(e)
}
