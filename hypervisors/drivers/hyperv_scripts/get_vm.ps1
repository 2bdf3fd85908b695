# get_vm: one VM by its VMId.
# Parameters ($p): {"id": VMId}.
# Returns: {id, name, state, cpus, memory, host, gen, ha, macs}
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
ConvertTo-Json -Compress -Depth 5 -InputObject (V $vm)
