package admin

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// SocketName is the admin socket's file name in a node's data dir.
const SocketName = "admin.sock"

// SocketPath is where the node that owns dataDir listens for its operator.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, SocketName) }

// maxSocketPath is the longest path a Unix socket can be bound at on Linux
// (sun_path is 108 bytes with its NUL); the temporary name adds 4.
const maxSocketPath = 107 - len(".new")

// ErrInUse means another live process answers on the admin socket.
var ErrInUse = errors.New("admin: another node is running with this data dir")

// listen binds the admin socket at path for this process alone.
//
// A live socket there (another node answers) is refused; a stale one (the
// file of a node that died without removing it) is replaced; anything else
// at path is left alone and refused. The socket is bound under a temporary
// name, made 0600, then renamed into place: the well-known name never
// exists with looser permissions, whatever the umask.
func listen(path string) (*net.UnixListener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("admin: socket path %s is %d bytes, longer than a Unix socket allows (%d): use a shorter --data-dir", path, len(path), maxSocketPath)
	}
	switch fi, err := os.Lstat(path); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("admin: %w", err)
	case fi.Mode()&os.ModeSocket == 0:
		return nil, fmt.Errorf("admin: %s exists and is not a socket; remove it if it is not needed", path)
	default:
		c, err := net.DialTimeout("unix", path, 2*time.Second)
		switch {
		case err == nil:
			c.Close()
			return nil, fmt.Errorf("%w (%s answers)", ErrInUse, path)
		case errors.Is(err, syscall.ECONNREFUSED):
			// Nobody listens: a node died without removing it.
			if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("admin: remove the stale socket: %w", err)
			}
		default:
			return nil, fmt.Errorf("admin: check %s: %w", path, err)
		}
	}
	tmp := path + ".new"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin: listen: %w", err)
	}
	// Close must not unlink: the name it knows is gone after the rename.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("admin: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("admin: %w", err)
	}
	return ln, nil
}
