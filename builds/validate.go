package builds

import (
	"io"
	"os"
	"path"
	"slices"
	"strings"
)

// Summary is what validation learned about a build archive.
type Summary struct {
	Project      string // from the Unreal layout (or the declared entrypoint's first directory)
	Entrypoint   string // clean relative path of the server binary
	Entries      int
	Uncompressed int64
}

// inspector collects the Summary while an archive is walked and checks the entrypoint's ELF.
type inspector struct {
	declared   string // declared entrypoint, clean; empty = find the Unreal layout
	tmpDir     string
	candidates []string
	checked    map[string]error // entrypoint candidates whose ELF was checked
	files      map[string]bool
	sum        Summary
}

func newInspector(declared, tmpDir string) (*inspector, error) {
	in := &inspector{tmpDir: tmpDir, checked: map[string]error{}, files: map[string]bool{}}
	if declared != "" {
		clean := path.Clean(declared)
		if strings.HasPrefix(declared, "/") || clean == "." || clean == ".." || strings.HasPrefix(clean, "../") {
			return nil, invalid("declared entrypoint %q must be a relative path inside the build", declared)
		}
		in.declared = clean
	}
	return in, nil
}

func (in *inspector) visit(e Entry, r io.Reader) error {
	in.sum.Entries++
	in.sum.Uncompressed += e.Size
	if e.Type != TypeFile {
		return nil
	}
	in.files[e.Name] = true
	want := false
	if in.declared != "" {
		want = e.Name == in.declared
	} else if _, ok := UnrealEntrypoint(e.Name); ok {
		want = true
	}
	if !want {
		return nil
	}
	in.candidates = append(in.candidates, e.Name)
	in.checked[e.Name] = spoolELF(in.tmpDir, e.Name, r)
	return nil
}

// finish picks the entrypoint and reports why none fits.
func (in *inspector) finish() (Summary, error) {
	slices.Sort(in.candidates)
	switch {
	case in.declared != "" && len(in.candidates) == 0:
		return Summary{}, invalid("declared entrypoint %q is not a regular file of the archive", in.declared)
	case len(in.candidates) == 0:
		return Summary{}, invalid("no server binary at the Unreal layout <Project>/Binaries/Linux/<Project>Server; package the server target for Linux or declare the entrypoint")
	case len(in.candidates) > 1:
		return Summary{}, invalid("several server binaries (%s); declare which one is the entrypoint", strings.Join(in.candidates, ", "))
	}
	ep := in.candidates[0]
	if err := in.checked[ep]; err != nil {
		return Summary{}, err
	}
	in.sum.Entrypoint = ep
	if p, ok := UnrealEntrypoint(ep); ok {
		in.sum.Project = p
	} else {
		in.sum.Project = strings.SplitN(ep, "/", 2)[0]
	}
	return in.sum, nil
}

// InspectTarGz validates a .tar.gz stream and returns its summary. tmpDir holds the spooled
// entrypoint while its ELF header is checked ("" = the system default).
func InspectTarGz(r io.Reader, lim Limits, entrypoint, tmpDir string) (Summary, error) {
	in, err := newInspector(entrypoint, tmpDir)
	if err != nil {
		return Summary{}, err
	}
	if err := WalkTarGz(r, lim, in.visit); err != nil {
		return Summary{}, err
	}
	return in.finish()
}

// InspectZip validates a zip archive and returns its summary.
func InspectZip(ra io.ReaderAt, size int64, lim Limits, entrypoint, tmpDir string) (Summary, error) {
	in, err := newInspector(entrypoint, tmpDir)
	if err != nil {
		return Summary{}, err
	}
	if err := WalkZip(ra, size, lim, in.visit); err != nil {
		return Summary{}, err
	}
	return in.finish()
}

// tempDirOr returns dir or the system temp dir.
func tempDirOr(dir string) string {
	if dir == "" {
		return os.TempDir()
	}
	return dir
}
