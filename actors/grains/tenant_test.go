package grains_test

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/chatpacket/chatpacket/actors/grainpb"
	"github.com/chatpacket/chatpacket/actors/grains"
	"github.com/chatpacket/chatpacket/storage"
)

func signupRequest(email string) *grainpb.SignupRequest {
	owner := storage.NewID()
	wk := make([]byte, 16)
	rand.Read(wk)
	return &grainpb.SignupRequest{
		Organization: "Acme", OwnerName: "Ada", OwnerEmail: email, EmailKey: email,
		PasswordHash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA", OwnerId: owner[:],
		WidgetKey: "wk_" + hex.EncodeToString(wk),
	}
}

func TestSignup(t *testing.T) {
	n := startNode(t)
	tenantID := storage.NewID()
	client := grainpb.GetTenantGrainClient(n.Cluster, tenantID.String())
	req := signupRequest("ada@example.com")
	res, err := client.Signup(req)
	if err != nil || string(res.TenantId) != string(tenantID[:]) || res.WidgetKey != req.WidgetKey {
		t.Fatalf("Signup = %v, %v", res, err)
	}
	// A retry of the same signup completes without error.
	if _, err := client.Signup(req); err != nil {
		t.Fatalf("retried Signup = %v; want nil", err)
	}
	// The same email for another tenant is taken.
	other := signupRequest("ada@example.com")
	if _, err := grainpb.GetTenantGrainClient(n.Cluster, storage.NewID().String()).Signup(other); grains.Reason(err) != grains.ReasonExists {
		t.Fatalf("Signup with a taken email = %v; want %s", err, grains.ReasonExists)
	}
	// A signup that names an existing tenant with another widget key does
	// not add its owner to that tenant.
	intruder := signupRequest("eve@example.com")
	if _, err := client.Signup(intruder); grains.Reason(err) != grains.ReasonExists {
		t.Fatalf("Signup into an existing tenant = %v; want %s", err, grains.ReasonExists)
	}
	// Its email claim was left behind with no account: a real signup with
	// that email takes it over.
	again := signupRequest("eve@example.com")
	if _, err := grainpb.GetTenantGrainClient(n.Cluster, storage.NewID().String()).Signup(again); err != nil {
		t.Fatalf("Signup with an email left behind by a failed signup = %v; want nil", err)
	}
}
