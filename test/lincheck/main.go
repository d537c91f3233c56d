// lincheck: checks a recorded history of register operations (get, put, compare-and-set) per key
// for linearizability with Porcupine. Operations whose outcome is unknown (timeout, connection
// lost) are open until the end of the history and may or may not have taken effect, as in Jepsen.
//
//	lincheck -history history.json [-html out.html] [-timeout 60s]
//
// Exit status: 0 linearizable, 1 not linearizable (visualization written to -html), 2 error or
// the check timed out.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"time"

	"github.com/anishathalye/porcupine"
)

// Op is one recorded operation, as the Node harness writes it.
type Op struct {
	Client  int    `json:"client"`
	Key     string `json:"key"`
	Kind    string `json:"op"` // get | put | cas
	Value   string `json:"value"`
	Old     string `json:"old"`
	Call    int64  `json:"call"`
	Return  int64  `json:"return"`
	Unknown bool   `json:"unknown"`
	OK      bool   `json:"ok"`     // cas succeeded
	Exists  bool   `json:"exists"` // get found the key
	Result  string `json:"result"` // get's value
}

type input struct {
	Key, Kind, Value, Old string
}

type output struct {
	Unknown, OK, Exists bool
	Result              string
}

type state struct {
	Exists bool
	V      string
}

func matches(s state, old string) bool { return s.Exists && s.V == old }

var model = porcupine.NondeterministicModel{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(input).Key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() []interface{} { return []interface{}{state{}} },
	Step: func(st, in, out interface{}) []interface{} {
		s, i, o := st.(state), in.(input), out.(output)
		switch i.Kind {
		case "get":
			if o.Exists == s.Exists && (!s.Exists || o.Result == s.V) {
				return []interface{}{s}
			}
			return nil
		case "put":
			next := state{true, i.Value}
			if o.Unknown {
				return []interface{}{s, next}
			}
			return []interface{}{next}
		case "cas":
			next := state{true, i.Value}
			switch {
			case o.Unknown && matches(s, i.Old):
				return []interface{}{s, next}
			case o.Unknown:
				return []interface{}{s}
			case o.OK && matches(s, i.Old):
				return []interface{}{next}
			case !o.OK && !matches(s, i.Old):
				return []interface{}{s}
			}
			return nil
		}
		return nil
	},
	DescribeOperation: func(in, out interface{}) string {
		i, o := in.(input), out.(output)
		switch {
		case o.Unknown:
			return fmt.Sprintf("%s(%s %q %q) -> ?", i.Kind, i.Key, i.Old, i.Value)
		case i.Kind == "get" && !o.Exists:
			return fmt.Sprintf("get(%s) -> none", i.Key)
		case i.Kind == "get":
			return fmt.Sprintf("get(%s) -> %q", i.Key, o.Result)
		case i.Kind == "put":
			return fmt.Sprintf("put(%s, %q)", i.Key, i.Value)
		default:
			return fmt.Sprintf("cas(%s, %q -> %q) -> %v", i.Key, i.Old, i.Value, o.OK)
		}
	},
	DescribeState: func(st interface{}) string {
		s := st.(state)
		if !s.Exists {
			return "none"
		}
		return fmt.Sprintf("%q", s.V)
	},
}

func main() {
	historyPath := flag.String("history", "", "history JSON written by the harness")
	htmlPath := flag.String("html", "", "where to write Porcupine's visualization when the history is not linearizable")
	timeout := flag.Duration("timeout", 60*time.Second, "give up after this long")
	flag.Parse()
	if *historyPath == "" {
		fmt.Fprintln(os.Stderr, "lincheck: -history is required")
		os.Exit(2)
	}
	data, err := os.ReadFile(*historyPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lincheck: %v\n", err)
		os.Exit(2)
	}
	var ops []Op
	if err := json.Unmarshal(data, &ops); err != nil {
		fmt.Fprintf(os.Stderr, "lincheck: %s is not a history: %v\n", *historyPath, err)
		os.Exit(2)
	}
	history := make([]porcupine.Operation, 0, len(ops))
	counts := map[string]int{}
	for _, op := range ops {
		if op.Unknown && op.Kind == "get" {
			counts["get unknown (dropped: reads change nothing)"]++
			continue
		}
		ret := op.Return
		if op.Unknown {
			ret = math.MaxInt64 // may take effect any time after the call
			counts[op.Kind+" unknown"]++
		} else {
			counts[op.Kind+" ok"]++
		}
		history = append(history, porcupine.Operation{
			ClientId: op.Client, Call: op.Call, Return: ret,
			Input:  input{Key: op.Key, Kind: op.Kind, Value: op.Value, Old: op.Old},
			Output: output{Unknown: op.Unknown, OK: op.OK, Exists: op.Exists, Result: op.Result},
		})
	}
	m := model.ToModel()
	res, info := porcupine.CheckOperationsVerbose(m, history, *timeout)
	summary, _ := json.Marshal(counts)
	fmt.Printf("operations: %s\n", summary)
	switch res {
	case porcupine.Ok:
		fmt.Println("linearizable")
	case porcupine.Illegal:
		fmt.Println("NOT linearizable")
		if *htmlPath != "" {
			if err := porcupine.VisualizePath(m, info, *htmlPath); err == nil {
				fmt.Printf("visualization: %s\n", *htmlPath)
			}
		}
		os.Exit(1)
	default:
		fmt.Println("unknown: the check timed out")
		os.Exit(2)
	}
}
