// Command vcsim runs govmomi's vCenter simulator for PureBoot's VMware driver tests.
//
// It is built from the govmomi sources Debian ships (golang-github-vmware-govmomi-dev,
// under /usr/share/gocode) with GO111MODULE=off; see build.py beside this file.
// The simulator is govmomi's own implementation of the vSphere Web Services
// (SOAP) API, so pyVmomi talks to it unmodified. No live vCenter runs on
// these machines.
//
// Inventory: govmomi's VPX model (datacenter DC0, cluster DC0_C0 with three
// hosts, a standalone host, datastore LocalDS_0, the standard network
// "VM Network" and the distributed port group DC0_DVPG0, powered-on VMs),
// with one VM powered off, renamed and marked as a template (-template).
//
// Credentials come from VCSIM_USERNAME / VCSIM_PASSWORD (not the command
// line, where any user could read them); only that pair may log in.
//
// One test hook, not part of the vSphere API: POST
// /pureboot/fail-next?method=ReconfigVM_Task&fault=InsufficientResourcesFault
// makes the next call of that *_Task method return a task that fails with
// that fault, as vCenter does when a host runs out of memory half-way
// through a provisioning run.
//
// On start it prints one JSON line ({"url": ..., "datastore_dir": ...}) and
// serves until SIGTERM/SIGINT or until its standard input closes (the test
// process went away).
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/ioutil"
	"log"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"

	"github.com/vmware/govmomi"
	"github.com/vmware/govmomi/find"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// faults the test hook can inject, by their vSphere fault type name.
var faults = map[string]func() types.BaseMethodFault{
	"InsufficientResourcesFault": func() types.BaseMethodFault { return &types.InsufficientResourcesFault{} },
	"HostCommunication":          func() types.BaseMethodFault { return &types.HostCommunication{} },
	"InvalidDeviceSpec":          func() types.BaseMethodFault { return &types.InvalidDeviceSpec{} },
}

var thisRef = regexp.MustCompile(`<_this[^>]*type="(\w+)"[^>]*>([^<]+)</_this>`)

// injector holds at most one armed fault per SOAP method name.
type injector struct {
	mu    sync.Mutex
	armed map[string]string // method -> fault name
	next  http.Handler
}

func (i *injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/pureboot/fail-next" {
		i.arm(w, r)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/sdk" {
		i.next.ServeHTTP(w, r)
		return
	}
	body, err := ioutil.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	_ = r.Body.Close()
	if method, fault, ok := i.take(body); ok {
		i.failTask(w, body, method, fault)
		return
	}
	r.Body = ioutil.NopCloser(bytes.NewReader(body))
	i.next.ServeHTTP(w, r)
}

func (i *injector) arm(w http.ResponseWriter, r *http.Request) {
	method, fault := r.URL.Query().Get("method"), r.URL.Query().Get("fault")
	if r.Method != http.MethodPost || !strings.HasSuffix(method, "_Task") || faults[fault] == nil {
		http.Error(w, "POST ?method=<Name>_Task&fault=<known fault>", http.StatusBadRequest)
		return
	}
	i.mu.Lock()
	i.armed[method] = fault
	i.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// take disarms and returns the fault armed for the method this request calls.
func (i *injector) take(body []byte) (string, string, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	for method, fault := range i.armed {
		if bytes.Contains(body, []byte("<"+method+" ")) || bytes.Contains(body, []byte("<"+method+">")) {
			delete(i.armed, method)
			return method, fault, true
		}
	}
	return "", "", false
}

// failTask answers the call with a simulator task that has already failed,
// as vCenter answers a *_Task method whose work then fails.
func (i *injector) failTask(w http.ResponseWriter, body []byte, method, fault string) {
	m := thisRef.FindSubmatch(body)
	if m == nil {
		http.Error(w, "no _this in request", http.StatusBadRequest)
		return
	}
	ref := types.ManagedObjectReference{Type: string(m[1]), Value: string(m[2])}
	name := strings.TrimSuffix(method, "_Task")
	task := simulator.CreateTask(ref, strings.ToLower(name[:1])+name[1:], func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, faults[fault]()
	})
	id := task.Run()
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+
		`<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" `+
		`xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">`+
		`<soapenv:Body><%sResponse xmlns="urn:vim25"><returnval type="Task">%s</returnval></%sResponse>`+
		`</soapenv:Body></soapenv:Envelope>`, method, id.Value, method)
}

// makeTemplate powers off one of the model's VMs, renames it and marks it as
// a template, through the API as an administrator would.
func makeTemplate(ctx context.Context, u *url.URL, vmPath, name string) error {
	c, err := govmomi.NewClient(ctx, u, true) // loopback to ourselves
	if err != nil {
		return err
	}
	defer func() { _ = c.Logout(ctx) }()
	vm, err := find.NewFinder(c.Client, true).VirtualMachine(ctx, vmPath)
	if err != nil {
		return err
	}
	var props mo.VirtualMachine
	if err = vm.Properties(ctx, vm.Reference(), []string{"runtime.powerState"}, &props); err != nil {
		return err
	}
	if props.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
		task, err := vm.PowerOff(ctx)
		if err != nil {
			return err
		}
		if err = task.Wait(ctx); err != nil {
			return err
		}
	}
	task, err := vm.Rename(ctx, name)
	if err != nil {
		return err
	}
	if err = task.Wait(ctx); err != nil {
		return err
	}
	return vm.MarkAsTemplate(ctx)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on (port 0: any free port)")
	certFile := flag.String("cert", "", "PEM server certificate (required: the simulator serves TLS)")
	keyFile := flag.String("key", "", "PEM private key of -cert")
	template := flag.String("template", "debian-12-template", "name of the VM marked as template")
	flag.Parse()

	username, password := os.Getenv("VCSIM_USERNAME"), os.Getenv("VCSIM_PASSWORD")
	if username == "" || password == "" || *certFile == "" || *keyFile == "" {
		log.Fatal("need -cert, -key and VCSIM_USERNAME/VCSIM_PASSWORD in the environment")
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}

	model := simulator.VPX()
	if err = model.Create(); err != nil {
		log.Fatal(err)
	}
	defer model.Remove()

	model.Service.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(username, password)}
	server := model.Service.NewServer()
	defer server.Close()
	// No client knows the URL yet: wrapping the handler now cannot race a request.
	server.Config.Handler = &injector{armed: map[string]string{}, next: server.Config.Handler}

	ctx := context.Background()
	if err = makeTemplate(ctx, server.URL, "/DC0/vm/DC0_C0_RP0_VM1", *template); err != nil {
		log.Fatal(err)
	}

	var datastoreDir string
	for _, ds := range simulator.Map.All("Datastore") {
		datastoreDir = ds.(*simulator.Datastore).Info.GetDatastoreInfo().Url
	}
	public := *server.URL
	public.User = nil
	line, _ := json.Marshal(map[string]string{"url": public.String(), "datastore_dir": datastoreDir})
	fmt.Println(string(line))

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		_, _ = io.Copy(ioutil.Discard, os.Stdin)
		stop <- syscall.SIGTERM
	}()
	<-stop
}
