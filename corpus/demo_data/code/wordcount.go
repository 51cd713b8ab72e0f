// Command wordcount reports line, word and byte counts for files,
// similar to the Unix wc tool, processing files concurrently.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"sort"
	"sync"
	"unicode"
)

type result struct {
	name  string
	lines int
	words int
	bytes int
	err   error
}

func count(name string) result {
	r := result{name: name}
	f, err := os.Open(name)
	if err != nil {
		r.err = err
		return r
	}
	defer f.Close()

	reader := bufio.NewReader(f)
	inWord := false
	for {
		c, size, err := reader.ReadRune()
		if err != nil {
			break
		}
		r.bytes += size
		if c == '\n' {
			r.lines++
		}
		if unicode.IsSpace(c) {
			inWord = false
		} else if !inWord {
			inWord = true
			r.words++
		}
	}
	return r
}

func main() {
	workers := flag.Int("j", 4, "number of files to process in parallel")
	flag.Parse()
	names := flag.Args()
	if len(names) == 0 {
		fmt.Fprintln(os.Stderr, "usage: wordcount [-j N] FILE...")
		os.Exit(2)
	}

	results := make([]result, len(names))
	sem := make(chan struct{}, *workers)
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func(i int, name string) {
			defer wg.Done()
			sem <- struct{}{}
			results[i] = count(name)
			<-sem
		}(i, name)
	}
	wg.Wait()

	sort.SliceStable(results, func(a, b int) bool { return results[a].name < results[b].name })
	var total result
	exit := 0
	for _, r := range results {
		if r.err != nil {
			fmt.Fprintf(os.Stderr, "wordcount: %v\n", r.err)
			exit = 1
			continue
		}
		fmt.Printf("%8d %8d %10d %s\n", r.lines, r.words, r.bytes, r.name)
		total.lines += r.lines
		total.words += r.words
		total.bytes += r.bytes
	}
	if len(results) > 1 {
		fmt.Printf("%8d %8d %10d total\n", total.lines, total.words, total.bytes)
	}
	os.Exit(exit)
}
