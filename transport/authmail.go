package transport

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/chatpacket/chatpacket/transport/mail"
)

// The service emails of accounts: verification, password reset and
// security alerts. They are sent in the background, so that a call answers
// as fast whether or not it sends one (a reset request must not tell, by
// its time, whether the account exists), and a slow SMTP server does not
// hold a login.

// mailTimeout bounds one background email: its lookups and its delivery.
const mailTimeout = 30 * time.Second

// accountState is what the account calls keep in memory on a node.
type accountState struct {
	throttles throttles
	// jobs are the background emails in flight; each ends by itself
	// within mailTimeout.
	jobs sync.WaitGroup
}

// WaitMail waits for the emails being sent in the background: call it when
// the server stops, after the listener closed. A policy notice's emails to
// every owner (a bulk job that may take minutes) are stopped instead; the
// node logs how far they got.
func (a *API) WaitMail() {
	a.stopPolicyMail()
	a.accounts.jobs.Wait()
}

// background runs job with its own deadline, after the request that asked
// for it has been answered. A failure is logged with the job's kind only:
// never an address, token or link.
func (a *API) background(kind string, job func(ctx context.Context) error) {
	a.accounts.jobs.Add(1)
	go func() {
		defer a.accounts.jobs.Done()
		ctx, cancel := context.WithTimeout(context.Background(), mailTimeout)
		defer cancel()
		if err := job(ctx); err != nil {
			a.Log.Error("account email not sent", "kind", kind, "err", err)
		}
	}()
}

// sendMail sends m in the background.
func (a *API) sendMail(kind string, m mail.Message) {
	if a.Mail == nil {
		a.Log.Warn("account email not sent: no mail sender", "kind", kind)
		return
	}
	a.background(kind, func(ctx context.Context) error { return a.deliver(ctx, m) })
}

// deliver sends m now; an error names no address.
func (a *API) deliver(ctx context.Context, m mail.Message) error {
	if a.Mail == nil {
		return fmt.Errorf("no mail sender")
	}
	if err := a.Mail.Send(ctx, m); err != nil {
		return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), m.To, "<recipient>"))
	}
	return nil
}

// linkOrigin is where the links of emails point: the configured public
// origin, else the origin the request was addressed to.
func (a *API) linkOrigin(r *http.Request) string {
	if a.PublicOrigin != "" {
		return strings.TrimSuffix(a.PublicOrigin, "/")
	}
	return a.ownOrigin(r)
}

func verifyMail(to, name, link string) mail.Message {
	return mail.Message{To: to, Subject: "Verify your email for ChatPacket", Text: fmt.Sprintf(`Hello %s,

Please confirm that this address is yours by opening this link:

%s

The link works once, for 48 hours. If you did not sign up for ChatPacket,
ignore this email: nothing more will be sent.
`, name, link)}
}

func resetMail(to, name, link string) mail.Message {
	return mail.Message{To: to, Subject: "Reset your ChatPacket password", Text: fmt.Sprintf(`Hello %s,

Someone asked to reset the password of your ChatPacket account. To choose
a new password, open this link:

%s

The link works once, for 1 hour. If you did not ask for it, ignore this
email: your password stays as it is.
`, name, link)}
}

// alertMail is a security alert: something changed on the account, and
// what to do if it was not its owner.
func alertMail(to, name, subject, what, origin string) mail.Message {
	return mail.Message{To: to, Subject: subject, Text: fmt.Sprintf(`Hello %s,

%s

If this was you, there is nothing to do. If it was not, reset your
password now from the login page, %s/login, then turn on
two-factor authentication.
`, name, what, origin)}
}
