package openmatch

import (
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
)

// pageSink is a grpc.ServerStream that keeps what is sent.
type pageSink struct {
	grpc.ServerStream
	pages [][]byte
}

func (s *pageSink) SendMsg(m any) error {
	s.pages = append(s.pages, m.(*preEncoded).b)
	return nil
}

// TestPagerPages: pages hold the elements in order, at most maxN each, and stay within maxBytes
// unless one element alone is larger (it then gets a page of its own).
func TestPagerPages(t *testing.T) {
	for _, tc := range []struct {
		name           string
		sizes          []int
		maxN, maxBytes int
		want           []int // elements per page
	}{
		{"none", nil, 10, 1 << 20, nil},
		{"by count", []int{5, 5, 5, 5, 5}, 2, 1 << 20, []int{2, 2, 1}},
		{"by bytes", []int{400, 400, 400, 400}, 10, 1024, []int{2, 2}},
		{"element over the limit alone", []int{10, 2000, 10, 10}, 10, 1024, []int{1, 1, 2}},
		{"exactly at the limit", []int{506, 506}, 10, 1024, []int{2}},
		{"empty elements", []int{0, 0, 0}, 2, 1024, []int{2, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := &pager{maxN: tc.maxN, maxBytes: tc.maxBytes}
			var want []string
			for i, n := range tc.sizes {
				e := strings.Repeat(string(rune('a'+i%26)), n)
				want = append(want, e)
				p.add(e)
			}
			var sink pageSink
			if err := p.send(&sink); err != nil {
				t.Fatal(err)
			}
			var got []string
			for i, pg := range sink.pages {
				n := 0
				for b := pg; len(b) > 0; n++ {
					num, typ, l := protowire.ConsumeTag(b)
					v, m := protowire.ConsumeBytes(b[l:])
					if l < 0 || m < 0 || num != 1 || typ != protowire.BytesType {
						t.Fatalf("page %d is not repeated field 1", i)
					}
					got = append(got, string(v))
					b = b[l+m:]
				}
				if i >= len(tc.want) || n != tc.want[i] {
					t.Fatalf("page %d holds %d elements; want pages of %v", i, n, tc.want)
				}
				if len(pg) > tc.maxBytes && n > 1 {
					t.Errorf("page %d is %d bytes with %d elements, over %d", i, len(pg), n, tc.maxBytes)
				}
			}
			if len(sink.pages) != len(tc.want) || strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("%d pages holding %d elements; want %v holding %d", len(sink.pages), len(got), tc.want, len(want))
			}
		})
	}
}
