package transport

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"image/png"
	"net/http"
	"strings"
	"time"

	"github.com/chatpacket/chatpacket/actors/actorspb"
	"github.com/chatpacket/chatpacket/actors/shard"
	"github.com/chatpacket/chatpacket/storage"
	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
)

// Two-factor authentication: TOTP (RFC 6238: 6 digits, 30 s, SHA-1, what
// every authenticator app reads), set up in two steps so that a secret is
// active only once the agent proved their app has it, plus ten single-use
// recovery codes. The secret lives in the agent's AccountRecord, sealed
// under the agent's key like every record; recovery codes are kept as
// SHA-256 hashes (they are 80 random bits: a hash cannot be reversed).
// A code is accepted once: its time step must come after the last used.

const (
	totpPeriod        = 30 * time.Second
	recoveryCodeCount = 10
)

var totpOpts = totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

func (a *API) registerTwoFactor(s *http.ServeMux) {
	s.Handle("POST /api/v1/2fa/setup", a.handler(a.authenticated(a.setupTwoFactor)))
	s.Handle("POST /api/v1/2fa/enable", a.handler(a.authenticated(a.enableTwoFactor)))
	s.Handle("POST /api/v1/2fa/disable", a.handler(a.authenticated(a.disableTwoFactor)))
}

var (
	errTwoFactorOn  = errorf(http.StatusConflict, "two_factor_enabled", "two-factor authentication is on already")
	errTwoFactorOff = errorf(http.StatusConflict, "two_factor_disabled", "two-factor authentication is off")
	errInvalidCode  = errorf(http.StatusBadRequest, "invalid_code", "this code is wrong or was used; use the current one")
)

// setupTwoFactor makes a new secret, pending until enableTwoFactor
// confirms it with a code.
func (a *API) setupTwoFactor(_ http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if !p.session {
		return 0, nil, errSessionOnly
	}
	agent, err := a.Machine.Agent(r.Context(), p.tenant, p.agent)
	if err != nil {
		return 0, nil, err
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: "ChatPacket", AccountName: agent.Email, Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return 0, nil, err
	}
	img, err := key.Image(256, 256)
	if err != nil {
		return 0, nil, err
	}
	var qr bytes.Buffer
	if err := png.Encode(&qr, img); err != nil {
		return 0, nil, err
	}
	_, err = a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_SetupTwoFactor{SetupTwoFactor: &actorspb.SetupTwoFactor{
		TenantId: p.tenant[:], AgentId: p.agent[:], PendingSecret: key.Secret(),
	}}})
	if errors.Is(err, shard.ErrExists) {
		return 0, nil, errTwoFactorOn
	}
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]string{
		"secret": key.Secret(), "otpauth_url": key.URL(), "qr_png_base64": base64.StdEncoding.EncodeToString(qr.Bytes()),
	}, nil
}

type codeRequest struct {
	Code     string `json:"code"`
	Password string `json:"password"`
}

// enableTwoFactor turns two-factor on with the pending secret, once a code
// of it is right, and answers the recovery codes (shown this once).
func (a *API) enableTwoFactor(w http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if !p.session {
		return 0, nil, errSessionOnly
	}
	var req codeRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	acc, err := a.Machine.Account(r.Context(), p.tenant, p.agent)
	if err != nil {
		return 0, nil, err
	}
	switch {
	case acc.TotpSecret != "":
		return 0, nil, errTwoFactorOn
	case acc.TotpPendingSecret == "":
		return 0, nil, errorf(http.StatusConflict, "no_setup", "set two-factor up first (POST /api/v1/2fa/setup)")
	}
	th, now := a.accounts.throttles.get(), a.Now()
	key := "agent:" + p.agent.String()
	if over, retry := th.secondFactor.over(key, now); over {
		return 0, nil, rateLimited(w, retry)
	}
	step, ok := totpStep(acc.TotpPendingSecret, req.Code, now)
	if !ok {
		th.secondFactor.spend(key, now)
		return 0, nil, errInvalidCode
	}
	codes, hashes := newRecoveryCodes()
	_, err = a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_EnableTwoFactor{EnableTwoFactor: &actorspb.EnableTwoFactor{
		TenantId: p.tenant[:], AgentId: p.agent[:], Secret: acc.TotpPendingSecret, RecoveryCodeHashes: hashes, Step: step,
	}}})
	switch {
	case errors.Is(err, shard.ErrExists):
		return 0, nil, errTwoFactorOn
	case errors.Is(err, shard.ErrNotFound): // set up again meanwhile
		return 0, nil, errInvalidCode
	case err != nil:
		return 0, nil, err
	}
	if agent, err := a.Machine.Agent(r.Context(), p.tenant, p.agent); err == nil {
		a.sendMail("two_factor_on", alertMail(agent.Email, agent.Name, "Two-factor authentication is on for your ChatPacket account",
			"Two-factor authentication was turned on for your ChatPacket account: logging in now takes a code of your authenticator app, or one of your recovery codes.", a.linkOrigin(r)))
	}
	return http.StatusOK, map[string]any{"recovery_codes": codes}, nil
}

// disableTwoFactor turns two-factor off, given the password and a code (or
// a recovery code).
func (a *API) disableTwoFactor(w http.ResponseWriter, r *http.Request, p *principal) (int, any, error) {
	if !p.session {
		return 0, nil, errSessionOnly
	}
	var req codeRequest
	if err := decode(r, &req); err != nil {
		return 0, nil, err
	}
	agent, err := a.checkCurrentPassword(w, r, p, req.Password)
	if err != nil {
		return 0, nil, err
	}
	acc, err := a.Machine.Account(r.Context(), p.tenant, p.agent)
	if err != nil {
		return 0, nil, err
	}
	if acc.TotpSecret == "" {
		return 0, nil, errTwoFactorOff
	}
	th, now := a.accounts.throttles.get(), a.Now()
	key := "agent:" + p.agent.String()
	if over, retry := th.secondFactor.over(key, now); over {
		return 0, nil, rateLimited(w, retry)
	}
	ok, err := a.spendSecondFactor(r.Context(), agent, acc, req.Code, now)
	if err != nil {
		return 0, nil, err
	}
	if !ok {
		th.secondFactor.spend(key, now)
		return 0, nil, errInvalidCode
	}
	if _, err := a.apply(r.Context(), &actorspb.Command{Op: &actorspb.Command_DisableTwoFactor{DisableTwoFactor: &actorspb.DisableTwoFactor{
		TenantId: p.tenant[:], AgentId: p.agent[:],
	}}}); err != nil {
		return 0, nil, err
	}
	a.sendMail("two_factor_off", alertMail(agent.Email, agent.Name, "Two-factor authentication is off for your ChatPacket account",
		"Two-factor authentication was turned off for your ChatPacket account: logging in now takes the password only.", a.linkOrigin(r)))
	return http.StatusNoContent, nil, nil
}

// secondFactorAtLogin asks for and spends the second factor of an agent
// whose password was right, when two-factor is on. failed is called on a
// wrong code (it spends the IP's failure budget).
func (a *API) secondFactorAtLogin(w http.ResponseWriter, r *http.Request, agent *actorspb.AgentRecord, code string, failed func()) error {
	acc, err := a.Machine.Account(r.Context(), storage.BytesID(agent.TenantId), storage.BytesID(agent.Id))
	if err != nil {
		return err
	}
	if acc.TotpSecret == "" {
		return nil
	}
	if strings.TrimSpace(code) == "" {
		return errTOTPRequired
	}
	th, now := a.accounts.throttles.get(), a.Now()
	key := "agent:" + storage.BytesID(agent.Id).String()
	if over, retry := th.secondFactor.over(key, now); over {
		return rateLimited(w, retry)
	}
	ok, err := a.spendSecondFactor(r.Context(), agent, acc, code, now)
	if err != nil {
		return err
	}
	if !ok {
		th.secondFactor.spend(key, now)
		failed()
		return errInvalidCredentials
	}
	return nil
}

// spendSecondFactor checks a TOTP code or a recovery code and, when right,
// uses it up.
func (a *API) spendSecondFactor(ctx context.Context, agent *actorspb.AgentRecord, acc *actorspb.AccountRecord, code string, now time.Time) (bool, error) {
	use := &actorspb.UseSecondFactor{TenantId: agent.TenantId, AgentId: agent.Id}
	if step, ok := totpStep(acc.TotpSecret, code, now); ok {
		use.Step = step
	} else if norm := normalizeRecoveryCode(code); len(norm) == recoveryCodeLen {
		use.RecoveryCodeHash = hashRecoveryCode(norm)
	} else {
		return false, nil
	}
	_, err := a.apply(ctx, &actorspb.Command{Op: &actorspb.Command_UseSecondFactor{UseSecondFactor: use}})
	if errors.Is(err, shard.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// totpStep returns the time step of the TOTP code of secret that code is,
// allowing one step of clock skew either way.
func totpStep(secret, code string, now time.Time) (int64, bool) {
	code = strings.ReplaceAll(strings.TrimSpace(code), " ", "")
	if secret == "" || len(code) != 6 || strings.Trim(code, "0123456789") != "" {
		return 0, false
	}
	for _, skew := range []int64{0, -1, 1} {
		t := now.Add(time.Duration(skew) * totpPeriod)
		want, err := totp.GenerateCodeCustom(secret, t, totpOpts)
		if err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return t.Unix() / int64(totpPeriod/time.Second), true
		}
	}
	return 0, false
}

// Recovery codes are 16 characters of base32 (80 bits), shown in groups of
// four: xxxx-xxxx-xxxx-xxxx.
const (
	recoveryCodeLen      = 16
	recoveryCodeAlphabet = "abcdefghijklmnopqrstuvwxyz234567"
)

func newRecoveryCodes() (codes []string, hashes [][]byte) {
	for range recoveryCodeCount {
		b := make([]byte, recoveryCodeLen)
		rand.Read(b)
		var s strings.Builder
		for i, c := range b {
			if i > 0 && i%4 == 0 {
				s.WriteByte('-')
			}
			s.WriteByte(recoveryCodeAlphabet[c&31])
		}
		codes = append(codes, s.String())
		hashes = append(hashes, hashRecoveryCode(normalizeRecoveryCode(s.String())))
	}
	return codes, hashes
}

func normalizeRecoveryCode(code string) string {
	return strings.NewReplacer("-", "", " ", "").Replace(strings.ToLower(strings.TrimSpace(code)))
}

func hashRecoveryCode(norm string) []byte {
	h := sha256.Sum256([]byte("chatpacket recovery code:" + norm))
	return h[:]
}
