package transport

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/chatpacket/chatpacket/transport/passwords"
	"golang.org/x/crypto/argon2"
)

// Password hashing: argon2id with OWASP's parameters (19 MiB, 2 passes, 1
// lane), a 16-byte random salt and a 32-byte key, stored in the PHC string
// format, so that parameters can be raised later without breaking old
// hashes.
const (
	argonMemoryKiB = 19 * 1024
	argonTime      = 2
	argonThreads   = 1
	argonKeyLen    = 32

	MinPasswordLen = 10
	MaxPasswordLen = 1024
)

func hashPassword(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemoryKiB, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemoryKiB, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

var errBadHash = errors.New("transport: malformed password hash")

// checkPassword reports whether password matches a PHC argon2id hash, in
// time that does not depend on where they differ.
func checkPassword(hash, password string) (bool, error) {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false, errBadHash
	}
	var version int
	var mem, iters uint32
	var threads uint8
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return false, errBadHash
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &mem, &iters, &threads); err != nil {
		return false, errBadHash
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false, errBadHash
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false, errBadHash
	}
	got := argon2.IDKey([]byte(password), salt, iters, mem, threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// dummyHash is checked against when a login names no account, so that an
// unknown email takes as long to refuse as a wrong password.
var dummyHash = hashPassword("not a password anyone has")

// checkNewPassword checks a password an agent chooses (signup, invitation,
// reset, change): its length, and that it is not one of the most common
// passwords (whatever its case), which are guessed first.
func checkNewPassword(password string) error {
	if n := utf8.RuneCountInString(password); n < MinPasswordLen || n > MaxPasswordLen {
		return errorf(http.StatusBadRequest, "invalid_password", "a password needs %d to %d characters", MinPasswordLen, MaxPasswordLen)
	}
	if passwords.Common(password) {
		return errorf(http.StatusBadRequest, "common_password", "this password is among the most common ones; choose another")
	}
	return nil
}
