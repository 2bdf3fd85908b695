# power: turns a VM on (if it is not running), off hard (if it is not off),
# or resets it (starts it if it was off).
# Parameters ($p): {"id": VMId, "action": "on" | "off" | "reboot"}.
# Returns: the VM afterwards, {id, name, state, cpus, memory, host, gen, ha, macs}
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Console]::OutputEncoding = [Text.Encoding]::UTF8
trap { $m = "$($_.Exception.Message)"; if ($m -notlike 'PUREBOOT|*') { $m = 'PUREBOOT|{0}|{1}' -f $_.CategoryInfo.Category, $m }; throw $m }
function V($v) {
  [ordered]@{id = "$($v.VMId)"; name = $v.Name; state = "$($v.State)"; cpus = $v.ProcessorCount
    memory = $v.MemoryStartup; host = $v.ComputerName; gen = $v.Generation; ha = $v.IsClustered
    macs = @($v.NetworkAdapters | ForEach-Object MacAddress)}
}
$vm = Get-VM -Id $p.id -ErrorAction SilentlyContinue
if (-not $vm) { throw "PUREBOOT|NotFound|no VM with id $($p.id)" }
$running = "$($vm.State)" -eq 'Running'
switch ($p.action) {
  'on' { if (-not $running) { Start-VM -VM $vm } }
  'off' { if ("$($vm.State)" -ne 'Off') { Stop-VM -VM $vm -TurnOff -Confirm:$false } }
  'reboot' { if ($running) { Restart-VM -VM $vm -Force } else { Start-VM -VM $vm } }
  default { throw "PUREBOOT|InvalidArgument|unknown power action $($p.action)" }
}
ConvertTo-Json -Compress -Depth 5 -InputObject (V (Get-VM -Id $p.id))
