# inventory: the host, its failover cluster (if any), file system drives,
# virtual switches and VMs.
# Parameters ($p): none.
# Returns: {"host": {name, cpus, memory, free, cluster}, "drives": [{name, size, free}],
#   "switches": [{name, type}], "vms": [{id, name, state, cpus, memory, host, gen, ha, macs}]}
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
[Console]::OutputEncoding = [Text.Encoding]::UTF8
trap { $m = "$($_.Exception.Message)"; if ($m -notlike 'PUREBOOT|*') { $m = 'PUREBOOT|{0}|{1}' -f $_.CategoryInfo.Category, $m }; throw $m }
function V($v) {
  [ordered]@{id = "$($v.VMId)"; name = $v.Name; state = "$($v.State)"; cpus = $v.ProcessorCount
    memory = $v.MemoryStartup; host = $v.ComputerName; gen = $v.Generation; ha = $v.IsClustered
    macs = @($v.NetworkAdapters | ForEach-Object MacAddress)}
}
$h = Get-VMHost
$os = Get-CimInstance Win32_OperatingSystem
$cluster = ''
if (Get-Command Get-Cluster -ErrorAction SilentlyContinue) {
  $cluster = "$((Get-Cluster -ErrorAction SilentlyContinue).Name)"
}
ConvertTo-Json -Compress -Depth 5 -InputObject ([ordered]@{
  host = [ordered]@{name = $h.ComputerName; cpus = $h.LogicalProcessorCount
    memory = $h.MemoryCapacity; free = 1024 * $os.FreePhysicalMemory; cluster = $cluster}
  drives = @(Get-PSDrive -PSProvider FileSystem | Where-Object { $null -ne $_.Free } |
    ForEach-Object { [ordered]@{name = $_.Root; size = $_.Used + $_.Free; free = $_.Free} })
  switches = @(Get-VMSwitch | ForEach-Object { [ordered]@{name = $_.Name; type = "$($_.SwitchType)"} })
  vms = @(Get-VM | ForEach-Object { V $_ })
})
