package builds

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// Build states. Only published builds have a manifest at all, so a reader never sees a half
// written one; "ready" is the one state a manifest is written in today, kept explicit so that
// later states (e.g. "retired") need no format change.
const StateReady = "ready"

// Manifest describes one stored build. It is stored beside the build's bytes, so the bucket is the
// only source of truth.
type Manifest struct {
	Tenant       string    `json:"tenant"`
	Project      string    `json:"project"`
	Version      string    `json:"version"`
	SHA256       string    `json:"sha256"`
	Format       string    `json:"format"`
	Entrypoint   string    `json:"entrypoint"`
	Size         int64     `json:"size"`
	Uncompressed int64     `json:"uncompressed"`
	Entries      int       `json:"entries"`
	Created      time.Time `json:"created"`
	State        string    `json:"state"`
}

// Traffic says which share (percent) of a project's players each version serves.
type Traffic struct {
	Project string         `json:"project"`
	Weights map[string]int `json:"weights"`
	Updated time.Time      `json:"updated"`
}

// Errors of the store, for errors.Is.
var (
	ErrNotFound = errors.New("build not found")
	ErrConflict = errors.New("conflict")
	ErrInUse    = errors.New("build in use")
)

var (
	tenantRE  = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
	sha256RE  = regexp.MustCompile(`^[0-9a-f]{64}$`)
	formatExt = map[string]string{FormatTarGz: "application/gzip", FormatZip: "application/zip"}
)

// ValidTenant reports whether t is a usable tenant (studio) id: it becomes part of object keys.
func ValidTenant(t string) bool { return tenantRE.MatchString(t) }

// ValidSHA256 reports whether s is a lower-case hex sha256.
func ValidSHA256(s string) bool { return sha256RE.MatchString(s) }

// Store keeps builds in a gocloud.dev/blob bucket:
//
//	tenants/<tenant>/builds/<sha256>/build          the archive, content addressed
//	tenants/<tenant>/builds/<sha256>/manifest.json  written last: its presence publishes the build
//	tenants/<tenant>/versions/<project>/<version>   claim (sha256) making a version name unique
//	tenants/<tenant>/traffic/<project>.json         version weights
//	tmp/<random>                                    uploads in flight
type Store struct {
	b      *blob.Bucket
	lim    Limits
	tmpDir string
	now    func() time.Time
}

// NewStore wraps an open bucket. tmpDir holds zip spools and entrypoint checks ("" = system temp).
func NewStore(b *blob.Bucket, lim Limits, tmpDir string) *Store {
	return &Store{b: b, lim: lim, tmpDir: tempDirOr(tmpDir), now: time.Now}
}

// Bucket is the store's bucket (for the runner, which reads builds from it).
func (s *Store) Bucket() *blob.Bucket { return s.b }

func buildPrefix(tenant, sha string) string { return "tenants/" + tenant + "/builds/" + sha + "/" }

// BlobKey is the key of a build's archive.
func BlobKey(tenant, sha string) string { return buildPrefix(tenant, sha) + "build" }

// ManifestKey is the key of a build's manifest.
func ManifestKey(tenant, sha string) string { return buildPrefix(tenant, sha) + "manifest.json" }

func versionKey(tenant, project, version string) string {
	return "tenants/" + tenant + "/versions/" + project + "/" + version
}

func trafficKey(tenant, project string) string {
	return "tenants/" + tenant + "/traffic/" + project + ".json"
}

// UploadOptions are the developer's declarations for one upload.
type UploadOptions struct {
	Format     string // FormatTarGz or FormatZip
	Version    string // empty: the first 12 hex digits of the sha256
	Entrypoint string // empty: the Unreal layout
}

// capReader refuses to read past n bytes: the upload size limit, enforced while streaming.
type capReader struct {
	r     io.Reader
	n     int64
	limit int64
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n > c.limit {
		return 0, tooLarge("upload passes %d bytes (max-archive-bytes)", c.limit)
	}
	if rem := c.limit + 1 - c.n; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.limit {
		return n, tooLarge("upload passes %d bytes (max-archive-bytes)", c.limit)
	}
	return n, err
}

// Upload validates body while streaming it into a temporary object, then publishes it under its
// sha256. It returns the manifest and whether the build is new; the same bytes uploaded again
// return the existing manifest (created false). On any refusal nothing stays behind.
func (s *Store) Upload(ctx context.Context, tenant string, body io.Reader, opt UploadOptions) (Manifest, bool, error) {
	if !ValidTenant(tenant) {
		return Manifest{}, false, invalid("tenant %q is not a valid id", tenant)
	}
	if _, ok := formatExt[opt.Format]; !ok {
		return Manifest{}, false, invalid("format %q: want %s or %s", opt.Format, FormatTarGz, FormatZip)
	}
	if opt.Version != "" && !nameRE.MatchString(opt.Version) {
		return Manifest{}, false, invalid("version %q: want 1-64 of A-Z a-z 0-9 . _ - starting alphanumeric", opt.Version)
	}
	tmp := "tmp/" + rand.Text()
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.b.NewWriter(wctx, tmp, &blob.WriterOptions{ContentType: formatExt[opt.Format]})
	if err != nil {
		return Manifest{}, false, fmt.Errorf("builds: temporary object: %w", err)
	}
	// Whatever happens, the temporary object goes: on failure the cancelled context aborts the
	// write (no object is created), on success it was copied to its final key.
	defer func() { _ = s.b.Delete(context.WithoutCancel(ctx), tmp) }()
	h := sha256.New()
	in := &capReader{r: body, limit: s.lim.MaxArchiveBytes}
	sum, size, err := s.validate(in, io.MultiWriter(h, w), opt)
	if err != nil {
		cancel()
		_ = w.Close()
		return Manifest{}, false, err
	}
	if err := w.Close(); err != nil {
		return Manifest{}, false, fmt.Errorf("builds: writing temporary object: %w", err)
	}
	sha := hex.EncodeToString(h.Sum(nil))
	if opt.Version == "" {
		opt.Version = sha[:12]
	}
	if !nameRE.MatchString(sum.Project) {
		return Manifest{}, false, invalid("project %q (from %s): want 1-64 of A-Z a-z 0-9 . _ - starting alphanumeric", sum.Project, sum.Entrypoint)
	}
	if old, err := s.Get(ctx, tenant, sha); err == nil {
		if old.Version != opt.Version {
			return old, false, fmt.Errorf("%w: these bytes are already build %s version %q; a build has one version", ErrConflict, sha, old.Version)
		}
		return old, false, nil
	} else if !errors.Is(err, ErrNotFound) {
		return Manifest{}, false, err
	}
	// Claim the version name first (a conditional write, so two uploads racing for one version
	// cannot both win), then copy the bytes, then publish the manifest.
	vk := versionKey(tenant, sum.Project, opt.Version)
	if err := s.b.WriteAll(ctx, vk, []byte(sha), &blob.WriterOptions{IfNotExist: true}); err != nil {
		if gcerrors.Code(err) != gcerrors.FailedPrecondition {
			return Manifest{}, false, fmt.Errorf("builds: claiming version: %w", err)
		}
		owner, rerr := s.b.ReadAll(ctx, vk)
		if rerr != nil {
			return Manifest{}, false, fmt.Errorf("builds: reading version claim: %w", rerr)
		}
		if string(owner) != sha {
			return Manifest{}, false, fmt.Errorf("%w: %s version %q is already build %s; pick a new version", ErrConflict, sum.Project, opt.Version, owner)
		}
	}
	if err := s.b.Copy(ctx, BlobKey(tenant, sha), tmp, nil); err != nil {
		return Manifest{}, false, fmt.Errorf("builds: publishing: %w", err)
	}
	m := Manifest{
		Tenant: tenant, Project: sum.Project, Version: opt.Version, SHA256: sha, Format: opt.Format,
		Entrypoint: sum.Entrypoint, Size: size, Uncompressed: sum.Uncompressed, Entries: sum.Entries,
		Created: s.now().UTC().Truncate(time.Millisecond), State: StateReady,
	}
	data, _ := json.MarshalIndent(m, "", "  ")
	if err := s.b.WriteAll(ctx, ManifestKey(tenant, sha), data, &blob.WriterOptions{ContentType: "application/json"}); err != nil {
		return Manifest{}, false, fmt.Errorf("builds: writing manifest: %w", err)
	}
	return m, true, nil
}

// validate streams the upload through the validator into out and returns the summary and size.
func (s *Store) validate(in io.Reader, out io.Writer, opt UploadOptions) (Summary, int64, error) {
	if opt.Format == FormatTarGz {
		cr := &countingReader{r: io.TeeReader(in, out)}
		sum, err := InspectTarGz(cr, s.lim, opt.Entrypoint, s.tmpDir)
		return sum, cr.n, err
	}
	// Zip keeps its directory at the end: spool to a capped temporary file (hashing and
	// uploading as the bytes arrive), then read it with random access.
	f, err := os.CreateTemp(s.tmpDir, "kumi-upload-*.zip")
	if err != nil {
		return Summary{}, 0, fmt.Errorf("builds: zip spool: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	size, err := io.Copy(io.MultiWriter(f, out), in)
	if err != nil {
		return Summary{}, size, err
	}
	sum, err := InspectZip(f, size, s.lim, opt.Entrypoint, s.tmpDir)
	return sum, size, err
}

// Get returns one build's manifest.
func (s *Store) Get(ctx context.Context, tenant, sha string) (Manifest, error) {
	if !ValidTenant(tenant) || !ValidSHA256(sha) {
		return Manifest{}, fmt.Errorf("%w: %s", ErrNotFound, sha)
	}
	data, err := s.b.ReadAll(ctx, ManifestKey(tenant, sha))
	if gcerrors.Code(err) == gcerrors.NotFound {
		return Manifest{}, fmt.Errorf("%w: %s", ErrNotFound, sha)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("builds: reading manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return Manifest{}, fmt.Errorf("builds: manifest %s: %w", sha, err)
	}
	return m, nil
}

// List returns a tenant's builds, newest first.
func (s *Store) List(ctx context.Context, tenant string) ([]Manifest, error) {
	if !ValidTenant(tenant) {
		return nil, nil
	}
	it := s.b.List(&blob.ListOptions{Prefix: "tenants/" + tenant + "/builds/"})
	var out []Manifest
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("builds: listing: %w", err)
		}
		rest := strings.TrimPrefix(obj.Key, "tenants/"+tenant+"/builds/")
		sha, file, ok := strings.Cut(rest, "/")
		if !ok || file != "manifest.json" {
			continue
		}
		m, err := s.Get(ctx, tenant, sha)
		if errors.Is(err, ErrNotFound) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Manifest) int { return b.Created.Compare(a.Created) })
	return out, nil
}

// Delete removes a build. A build that still serves a share of its project's players is refused:
// set its weight to 0 first.
func (s *Store) Delete(ctx context.Context, tenant, sha string) error {
	m, err := s.Get(ctx, tenant, sha)
	if err != nil {
		return err
	}
	t, err := s.Traffic(ctx, tenant, m.Project)
	if err != nil {
		return err
	}
	if w := t.Weights[m.Version]; w > 0 {
		return fmt.Errorf("%w: %s version %q serves %d%% of players; move its traffic first", ErrInUse, m.Project, m.Version, w)
	}
	// Manifest first: from here on the build is invisible, whatever happens to the rest.
	for _, k := range []string{ManifestKey(tenant, sha), versionKey(tenant, m.Project, m.Version), BlobKey(tenant, sha)} {
		if err := s.b.Delete(ctx, k); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			return fmt.Errorf("builds: deleting %s: %w", k, err)
		}
	}
	return nil
}

// Traffic returns a project's version weights (empty when never set).
func (s *Store) Traffic(ctx context.Context, tenant, project string) (Traffic, error) {
	t := Traffic{Project: project, Weights: map[string]int{}}
	if !ValidTenant(tenant) || !nameRE.MatchString(project) {
		return t, invalid("project %q is not a valid name", project)
	}
	data, err := s.b.ReadAll(ctx, trafficKey(tenant, project))
	if gcerrors.Code(err) == gcerrors.NotFound {
		return t, nil
	}
	if err != nil {
		return t, fmt.Errorf("builds: reading traffic: %w", err)
	}
	if err := json.Unmarshal(data, &t); err != nil {
		return t, fmt.Errorf("builds: traffic of %s: %w", project, err)
	}
	return t, nil
}

// SetTraffic sets which share of a project's players each version serves: every named version
// must be a stored build of the project, weights are percentages summing to 100.
func (s *Store) SetTraffic(ctx context.Context, tenant, project string, weights map[string]int) (Traffic, error) {
	if !ValidTenant(tenant) || !nameRE.MatchString(project) {
		return Traffic{}, invalid("project %q is not a valid name", project)
	}
	total := 0
	for _, v := range slices.Sorted(maps.Keys(weights)) {
		w := weights[v]
		if w < 0 || w > 100 {
			return Traffic{}, invalid("version %q: weight %d is not a percentage (0-100)", v, w)
		}
		total += w
		if !nameRE.MatchString(v) {
			return Traffic{}, invalid("version %q is not a valid name", v)
		}
		if ok, err := s.b.Exists(ctx, versionKey(tenant, project, v)); err != nil {
			return Traffic{}, fmt.Errorf("builds: %w", err)
		} else if !ok {
			return Traffic{}, fmt.Errorf("%w: %s has no version %q", ErrNotFound, project, v)
		}
	}
	if total != 100 {
		return Traffic{}, invalid("weights sum to %d; they are percentages of players and must sum to 100", total)
	}
	t := Traffic{Project: project, Weights: weights, Updated: s.now().UTC()}
	data, _ := json.MarshalIndent(t, "", "  ")
	if err := s.b.WriteAll(ctx, trafficKey(tenant, project), data, &blob.WriterOptions{ContentType: "application/json"}); err != nil {
		return Traffic{}, fmt.Errorf("builds: writing traffic: %w", err)
	}
	return t, nil
}

// Open returns a build's manifest and a reader of its archive. The reader's bytes are exactly what
// was validated; callers that unpack them check the sha256 again (Fetch does).
func (s *Store) Open(ctx context.Context, tenant, sha string) (Manifest, *blob.Reader, error) {
	m, err := s.Get(ctx, tenant, sha)
	if err != nil {
		return Manifest{}, nil, err
	}
	r, err := s.b.NewReader(ctx, BlobKey(tenant, sha), nil)
	if err != nil {
		return Manifest{}, nil, fmt.Errorf("builds: opening %s: %w", sha, err)
	}
	return m, r, nil
}

// ListAll returns every tenant's builds (for the cluster's Fleet reconciler, which serves all
// studios), ordered by tenant then newest first.
func (s *Store) ListAll(ctx context.Context) ([]Manifest, error) {
	it := s.b.List(&blob.ListOptions{Prefix: "tenants/", Delimiter: "/"})
	var out []Manifest
	for {
		obj, err := it.Next(ctx)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("builds: listing tenants: %w", err)
		}
		tenant := strings.TrimSuffix(strings.TrimPrefix(obj.Key, "tenants/"), "/")
		if !obj.IsDir || !ValidTenant(tenant) {
			continue
		}
		ms, err := s.List(ctx, tenant)
		if err != nil {
			return nil, err
		}
		out = append(out, ms...)
	}
	return out, nil
}
